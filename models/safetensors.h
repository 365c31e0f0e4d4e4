// Safetensors reading (mmap, fully validated) and writing. Plain C++, no libtorch.
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data buffer; offsets are relative to the start of the data buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/common/status.h"

namespace muse::models {

enum class DType { kF32, kF16, kBF16, kI64, kI32, kU8 };
size_t DTypeSize(DType d);
const char* DTypeName(DType d);  // safetensors spelling: "F32", "BF16", ...

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // points into the mapping; valid while the owning file lives
  size_t nbytes = 0;
  int64_t numel() const;
};

// One mmapped .safetensors file. Open() validates everything before any tensor is exposed:
// header length within the file, JSON well-formed, known dtypes, non-negative shapes,
// byte size == numel * dtype size, offsets inside the data buffer and not overlapping.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // numel * DTypeSize(dtype)
};
// Writes tensors (in the given order) with optional metadata, atomically (tmp file + rename).
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace muse::models
