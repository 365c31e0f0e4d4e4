#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_join.h"

namespace muse::models {
namespace {

using json = nlohmann::json;

constexpr size_t kLengthBytes = 8;

absl::Status ErrnoError(int err, const std::string& what) {
  const std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status Invalid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

absl::Status InvalidTensor(const std::string& path, const std::string& name,
                           const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "': ", what));
}

bool ParseDType(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::kFloat32}, {"F16", DType::kFloat16}, {"BF16", DType::kBFloat16},
      {"I64", DType::kInt64},   {"I32", DType::kInt32},   {"U8", DType::kUInt8}};
  for (const auto& [name, d] : kNames) {
    if (s == name) {
      *out = d;
      return true;
    }
  }
  return false;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// A non-negative integer that fits in int64 (JSON floats such as 2.0 are not accepted).
bool AsIndex(const json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;  // nlohmann types non-negative integers as unsigned
  const uint64_t u = v.get<uint64_t>();
  if (u > static_cast<uint64_t>(INT64_MAX)) return false;
  *out = u;
  return true;
}

struct Range {
  uint64_t begin;
  uint64_t end;
  const std::string* name;
};

// Writes to a temp file beside the target and renames over it, so readers never see a torn file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path)
      : path_(std::move(path)), tmp_(absl::StrCat(path_, ".tmp.", getpid())) {}
  ~AtomicFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) std::remove(tmp_.c_str());
  }
  absl::Status Open() {
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (file_ == nullptr) return ErrnoError(errno, absl::StrCat("cannot create ", tmp_));
    std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
    return absl::OkStatus();
  }
  absl::Status Write(const void* data, size_t n) {
    if (n != 0 && std::fwrite(data, 1, n, file_) != n) {
      return ErrnoError(errno, absl::StrCat("write to ", tmp_));
    }
    return absl::OkStatus();
  }
  absl::Status Commit() {
    if (std::fflush(file_) != 0) return ErrnoError(errno, absl::StrCat("flush ", tmp_));
    if (::fsync(fileno(file_)) != 0) return ErrnoError(errno, absl::StrCat("fsync ", tmp_));
    FILE* f = file_;
    file_ = nullptr;
    if (std::fclose(f) != 0) return ErrnoError(errno, absl::StrCat("close ", tmp_));
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      return ErrnoError(errno, absl::StrCat("rename ", tmp_, " -> ", path_));
    }
    committed_ = true;
    return absl::OkStatus();
  }

 private:
  std::string path_;
  std::string tmp_;
  FILE* file_ = nullptr;
  bool committed_ = false;
};

// Product of dims and the byte size, or false on overflow. The product of the non-zero dims must
// fit in int64 too, so that every partial product TensorView::numel() (and any caller multiplying
// dims in order) forms is representable even when a later dim is 0 ([2^62, 3, 0] is rejected).
bool ByteSize(const std::vector<int64_t>& shape, DType dtype, uint64_t* numel, uint64_t* nbytes) {
  uint64_t nonzero = 1;
  bool any_zero = false;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) {
      any_zero = true;
      continue;
    }
    if (__builtin_mul_overflow(nonzero, static_cast<uint64_t>(d), &nonzero) ||
        nonzero > static_cast<uint64_t>(INT64_MAX)) {
      return false;
    }
  }
  const uint64_t n = any_zero ? 0 : nonzero;
  *numel = n;
  return !__builtin_mul_overflow(n, static_cast<uint64_t>(kernels::dtype_size(dtype)), nbytes);
}

}  // namespace

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kFloat32:
      return "F32";
    case DType::kFloat16:
      return "F16";
    case DType::kBFloat16:
      return "BF16";
    case DType::kInt64:
      return "I64";
    case DType::kInt32:
      return "I32";
    case DType::kUInt8:
      return "U8";
  }
  return "?";
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated against overflow at Open()
  return n;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError(err, absl::StrCat("cannot stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(path, "not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < kLengthBytes) {
    ::close(fd);
    return Invalid(
        path, absl::StrCat("file is ", file_size, " bytes, shorter than the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) return ErrnoError(map_err, absl::StrCat("cannot mmap ", path));
  file->map_ = map;
  file->map_size_ = file_size;
  const auto* bytes = static_cast<const uint8_t*>(map);

  uint64_t header_len = 0;
  for (size_t i = 0; i < kLengthBytes; ++i) header_len |= uint64_t{bytes[i]} << (8 * i);
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Invalid(path, absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                      kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_len > file_size - kLengthBytes) {
    return Invalid(path, absl::StrCat("header length ", header_len,
                                      " runs past the end of the file (", file_size, " bytes)"));
  }
  const uint64_t data_start = kLengthBytes + header_len;
  const uint64_t data_size = file_size - data_start;
  const char* header_begin = reinterpret_cast<const char*>(bytes + kLengthBytes);

  // A repeated top-level key would silently shadow a tensor, so the parser reports it.
  std::string duplicate;
  std::set<std::string> top_keys;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!top_keys.insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_len, on_event);
  } catch (const json::exception& e) {
    return Invalid(path, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) {
    return Invalid(path, absl::StrCat("header must be a JSON object, got ", header.type_name()));
  }
  if (!duplicate.empty())
    return Invalid(path, absl::StrCat("header repeats key '", duplicate, "'"));

  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& info = it.value();
    if (name == "__metadata__") {
      if (!info.is_object()) return Invalid(path, "__metadata__ must be an object of strings");
      for (auto m = info.begin(); m != info.end(); ++m) {
        if (!m.value().is_string()) {
          return Invalid(path,
                         absl::StrCat("__metadata__ value for '", m.key(), "' must be a string"));
        }
        file->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!info.is_object()) return InvalidTensor(path, name, "entry must be an object");

    auto dtype_it = info.find("dtype");
    if (dtype_it == info.end() || !dtype_it->is_string()) {
      return InvalidTensor(path, name, "missing string field 'dtype'");
    }
    DType dtype;
    if (!ParseDType(dtype_it->get<std::string>(), &dtype)) {
      return InvalidTensor(path, name,
                           absl::StrCat("unknown dtype '", dtype_it->get<std::string>(),
                                        "' (supported: F32, F16, BF16, I64, I32, U8)"));
    }

    auto shape_it = info.find("shape");
    if (shape_it == info.end() || !shape_it->is_array()) {
      return InvalidTensor(path, name, "shape must be a list of non-negative integers");
    }
    std::vector<int64_t> shape;
    for (const json& d : *shape_it) {
      uint64_t v;
      if (!AsIndex(d, &v)) {
        return InvalidTensor(
            path, name,
            absl::StrCat("shape must be a list of non-negative integers, got ", shape_it->dump()));
      }
      shape.push_back(static_cast<int64_t>(v));
    }
    uint64_t numel = 0, expected_bytes = 0;
    if (!ByteSize(shape, dtype, &numel, &expected_bytes) ||
        numel > static_cast<uint64_t>(INT64_MAX)) {
      return InvalidTensor(
          path, name, absl::StrCat("shape ", ShapeString(shape), " overflows the element count"));
    }

    auto off_it = info.find("data_offsets");
    uint64_t begin = 0, end = 0;
    if (off_it == info.end() || !off_it->is_array() || off_it->size() != 2 ||
        !AsIndex((*off_it)[0], &begin) || !AsIndex((*off_it)[1], &end)) {
      return InvalidTensor(
          path, name,
          absl::StrCat("data_offsets must be [begin, end] of non-negative integers",
                       off_it == info.end() ? "" : ", got " + off_it->dump()));
    }
    if (begin > end) {
      return InvalidTensor(path, name, absl::StrCat("data_offsets begin ", begin, " > end ", end));
    }
    if (end > data_size) {
      return InvalidTensor(path, name,
                           absl::StrCat("data_offsets end ", end, " is past the data buffer (",
                                        data_size, " bytes)"));
    }
    if (end - begin != expected_bytes) {
      return InvalidTensor(
          path, name,
          absl::StrCat("data_offsets cover ", end - begin, " bytes but shape ", ShapeString(shape),
                       " of ", DTypeName(dtype), " needs ", expected_bytes, " bytes"));
    }

    TensorView view;
    view.name = name;
    view.dtype = dtype;
    view.shape = std::move(shape);
    view.data = bytes + data_start + begin;
    view.nbytes = static_cast<size_t>(end - begin);
    auto [pos, inserted] = file->tensors_.emplace(name, std::move(view));
    ranges.push_back({begin, end, &pos->first});
  }

  // Empty tensors occupy no bytes and cannot overlap anything.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Range* furthest = nullptr;
  for (const Range& r : ranges) {
    if (r.begin == r.end) continue;
    if (furthest != nullptr && r.begin < furthest->end) {
      return Invalid(path, absl::StrCat("tensors '", *furthest->name, "' [", furthest->begin, ", ",
                                        furthest->end, ") and '", *r.name, "' [", r.begin, ", ",
                                        r.end, ") overlap"));
    }
    if (furthest == nullptr || r.end > furthest->end) furthest = &r;
  }
  return file;
}

absl::Status WriteSafetensorsStreamed(const std::string& path, const std::vector<TensorSpec>& specs,
                                      const TensorProducer& produce,
                                      const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps __metadata__ first and tensors in the caller's order, like HF's writer.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  std::set<std::string> seen;
  for (const TensorSpec& spec : specs) {
    if (spec.name == "__metadata__" || !seen.insert(spec.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor name '", spec.name, "' is reserved or repeated"));
    }
    uint64_t numel = 0, nbytes = 0;
    if (!ByteSize(spec.shape, spec.dtype, &numel, &nbytes)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", spec.name, "' shape ",
                                                     ShapeString(spec.shape), " is invalid"));
    }
    header[spec.name] = {{"dtype", DTypeName(spec.dtype)},
                         {"shape", spec.shape},
                         {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    sizes.push_back(nbytes);
  }
  std::string text = header.dump();
  // Pad with spaces so the data buffer starts 8-byte aligned (HF does the same).
  text.append((kLengthBytes - text.size() % kLengthBytes) % kLengthBytes, ' ');

  AtomicFile out(path);
  RETURN_IF_ERROR(out.Open());
  uint8_t len[kLengthBytes];
  for (size_t i = 0; i < kLengthBytes; ++i) len[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  RETURN_IF_ERROR(out.Write(len, sizeof(len)));
  RETURN_IF_ERROR(out.Write(text.data(), text.size()));
  for (size_t i = 0; i < specs.size(); ++i) {
    uint64_t written = 0;
    const ByteSink sink = [&](const void* data, size_t n) -> absl::Status {
      if (written + n > sizes[i]) {
        return absl::InternalError(absl::StrCat(path, ": producer wrote more than the ", sizes[i],
                                                " bytes of tensor '", specs[i].name, "'"));
      }
      written += n;
      return out.Write(data, n);
    };
    RETURN_IF_ERROR(produce(i, sink));
    if (written != sizes[i]) {
      return absl::InternalError(absl::StrCat(path, ": producer wrote ", written, " of the ",
                                              sizes[i], " bytes of tensor '", specs[i].name, "'"));
    }
  }
  return out.Commit();
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const TensorToWrite& t : tensors) {
    uint64_t numel = 0, nbytes = 0;
    if (ByteSize(t.shape, t.dtype, &numel, &nbytes) && nbytes != t.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", t.name, "' has ", t.bytes.size(), " bytes but shape ",
          ShapeString(t.shape), " of ", DTypeName(t.dtype), " needs ", nbytes, " bytes"));
    }
    specs.push_back({t.name, t.dtype, t.shape});
  }
  return WriteSafetensorsStreamed(
      path, specs,
      [&](size_t i, const ByteSink& sink) {
        return sink(tensors[i].bytes.data(), tensors[i].bytes.size());
      },
      metadata);
}

}  // namespace muse::models
