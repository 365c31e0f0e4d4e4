// Safetensors reading (mmap, fully validated) and writing. Plain C++, no libtorch.
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data buffer; offsets are relative to the start of the data buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "src/common/status.h"

namespace muse::models {

using kernels::DType;
const char* DTypeName(DType d);  // safetensors spelling: "F32", "BF16", ...

struct TensorView {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  // Points into the mapping; valid while the owning file lives. Aligned to the dtype size when
  // the writer aligned it (HF writers and WriteSafetensors of one dtype do); the format does not
  // promise it, so check before reinterpret_cast on other files.
  const void* data = nullptr;
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
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // numel * kernels::dtype_size(dtype)
};
// Writes tensors (in the given order) with optional metadata, atomically (tmp file + rename).
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Streaming variant for checkpoints larger than memory: the header is built from `specs`, then
// `produce(i, sink)` is called for each tensor in order and must pass exactly
// numel * dtype_size bytes to `sink` (in any number of pieces). Also atomic.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
};
using ByteSink = std::function<absl::Status(const void* data, size_t nbytes)>;
using TensorProducer = std::function<absl::Status(size_t index, const ByteSink& sink)>;
absl::Status WriteSafetensorsStreamed(const std::string& path, const std::vector<TensorSpec>& specs,
                                      const TensorProducer& produce,
                                      const std::map<std::string, std::string>& metadata = {});

// Largest header Open() accepts; real checkpoints stay far below it (Llama 3 405B: ~100 KB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

}  // namespace muse::models
