// libFuzzer target: a whole .safetensors file (8-byte header length, JSON header, data buffer)
// through SafetensorsFile::Open. The input is written to a memfd and opened through
// /proc/self/fd, so Open's own open/fstat/mmap path runs unchanged.
//
// Invariants on success (checked against an independent parse of the header): every tensor's
// [begin, end) lies inside the data buffer, its bytes are the input's bytes there (all read, so a
// view outside the mapping faults), nbytes == numel * dtype size, and no two tensors overlap.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "models/safetensors.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

int MemFd() {
  static const int fd = [] {
    const int f = memfd_create("safetensors_fuzz", MFD_CLOEXEC);
    if (f < 0) std::abort();
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = MemFd();
  if (ftruncate(fd, 0) != 0) std::abort();
  if (size > 0 && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);

  auto file = muse::models::SafetensorsFile::Open(path);
  if (!file.ok()) {
    Check(file.status().code() == absl::StatusCode::kInvalidArgument, "error is InvalidArgument");
    return 0;
  }
  // Open succeeded, so the length prefix and header are in range.
  Check(size >= 8, "file has a length prefix");
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= uint64_t{data[i]} << (8 * i);
  Check(header_len <= size - 8, "header inside the file");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  const auto header = nlohmann::json::parse(data + 8, data + data_start);

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, view] : (*file)->tensors()) {
    Check(view.name == name, "view named by its key");
    Check(header.contains(name) && name != "__metadata__", "tensor is in the header");
    const auto& offsets = header[name]["data_offsets"];
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    Check(begin <= end && end <= data_size, "data_offsets inside the data buffer");
    Check(view.nbytes == end - begin, "nbytes == end - begin");
    const int64_t numel = view.numel();
    Check(numel >= 0, "numel non-negative");
    Check(static_cast<uint64_t>(numel) * muse::kernels::dtype_size(view.dtype) == view.nbytes,
          "nbytes == numel * dtype size");
    Check(view.nbytes == 0 || std::memcmp(view.data, data + data_start + begin, view.nbytes) == 0,
          "view bytes are the file's bytes");
    if (begin != end) ranges.emplace_back(begin, end);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    Check(ranges[i - 1].second <= ranges[i].first, "tensors do not overlap");
  }
  for (const auto& [key, value] : (*file)->metadata()) {
    Check(header["__metadata__"][key] == value, "metadata matches the header");
  }
  return 0;
}
