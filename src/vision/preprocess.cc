#include "src/vision/preprocess.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "src/common/file_util.h"

namespace muse::vision {
namespace {

using json = nlohmann::json;

constexpr int kPrecisionBits = 32 - 8 - 2;  // PIL Resample.c

double BicubicFilter(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double BilinearFilter(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// PIL precompute_coeffs + normalize_coeffs_8bpc for one axis.
struct Coeffs {
  int ksize = 0;
  std::vector<int> xmin, xcount;  // per output index
  std::vector<int32_t> k;         // [out, ksize] fixed point
};

Coeffs PrecomputeCoeffs(int in_size, int out_size, double (*filter)(double),
                        double filter_support) {
  Coeffs c;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.xmin.resize(out_size);
  c.xcount.resize(out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // NOLINTNEXTLINE(bugprone-incorrect-roundings): PIL's int(x + 0.5), C truncation included
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    // NOLINTNEXTLINE(bugprone-incorrect-roundings): PIL's int(x + 0.5), bit-exact with PIL
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = filter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                // NOLINTNEXTLINE(bugprone-incorrect-roundings): PIL's int(x + 0.5) for v >= 0
                : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.xmin[xx] = xmin;
    c.xcount[xx] = xmax;
  }
  return c;
}

inline uint8_t Clip8(int64_t v) {
  if (v >= (int64_t{1} << kPrecisionBits) * 256) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

Image ResampleHorizontal(const Image& in, int out_w, const Coeffs& c) {
  Image out;
  out.width = out_w;
  out.height = in.height;
  out.rgb.resize(static_cast<size_t>(out_w) * in.height * 3);
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* row = in.rgb.data() + static_cast<size_t>(y) * in.width * 3;
    uint8_t* orow = out.rgb.data() + static_cast<size_t>(y) * out_w * 3;
    for (int xx = 0; xx < out_w; ++xx) {
      const int32_t* k = c.k.data() + static_cast<size_t>(xx) * c.ksize;
      for (int ch = 0; ch < 3; ++ch) {
        int64_t ss = int64_t{1} << (kPrecisionBits - 1);
        for (int x = 0; x < c.xcount[xx]; ++x) ss += row[(x + c.xmin[xx]) * 3 + ch] * int64_t{k[x]};
        orow[xx * 3 + ch] = Clip8(ss);
      }
    }
  }
  return out;
}

Image ResampleVertical(const Image& in, int out_h, const Coeffs& c) {
  Image out;
  out.width = in.width;
  out.height = out_h;
  out.rgb.resize(static_cast<size_t>(in.width) * out_h * 3);
  const size_t stride = static_cast<size_t>(in.width) * 3;
  for (int yy = 0; yy < out_h; ++yy) {
    const int32_t* k = c.k.data() + static_cast<size_t>(yy) * c.ksize;
    uint8_t* orow = out.rgb.data() + yy * stride;
    for (size_t i = 0; i < stride; ++i) {
      int64_t ss = int64_t{1} << (kPrecisionBits - 1);
      for (int y = 0; y < c.xcount[yy]; ++y)
        ss += in.rgb[(y + c.xmin[yy]) * stride + i] * int64_t{k[y]};
      orow[i] = Clip8(ss);
    }
  }
  return out;
}

absl::Status KeyError(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("preprocessor_config.json: key '", key, "' ", what));
}

bool Has(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

absl::StatusOr<int> PositiveInt(const json& v, const std::string& key) {
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1 << 16)) {
    return KeyError(key, absl::StrCat("must be a positive integer <= 65536, got ", v.dump()));
  }
  return static_cast<int>(v.get<int64_t>());
}

absl::Status GetBool(const json& j, const char* key, bool* out) {
  if (!Has(j, key)) return absl::OkStatus();
  if (!j.at(key).is_boolean()) return KeyError(key, "must be true or false");
  *out = j.at(key).get<bool>();
  return absl::OkStatus();
}

absl::Status GetTriple(const json& j, const char* key, std::array<float, 3>* out) {
  if (!Has(j, key)) return absl::OkStatus();
  const json& v = j.at(key);
  if (v.is_number()) {
    out->fill(v.get<float>());
    return absl::OkStatus();
  }
  if (!v.is_array() || v.size() != 3)
    return KeyError(key, "must be a number or a list of 3 numbers");
  for (int i = 0; i < 3; ++i) {
    if (!v[i].is_number()) return KeyError(key, "must be a number or a list of 3 numbers");
    (*out)[i] = v[i].get<float>();
  }
  return absl::OkStatus();
}

absl::StatusOr<PreprocessorConfig> ParseObject(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("preprocessor_config.json: not an object");
  std::string type = "CLIPImageProcessor";
  if (Has(j, "image_processor_type")) {
    if (!j.at("image_processor_type").is_string())
      return KeyError("image_processor_type", "must be a string");
    type = j.at("image_processor_type").get<std::string>();
  }
  // Fast variants share the slow ones' fields.
  if (type.size() > 4 && type.substr(type.size() - 4) == "Fast") type.resize(type.size() - 4);
  if (type != "CLIPImageProcessor" && type != "SiglipImageProcessor") {
    return KeyError("image_processor_type",
                    absl::StrCat("'", type,
                                 "' is not supported "
                                 "(CLIPImageProcessor, SiglipImageProcessor)"));
  }
  PreprocessorConfig c = DefaultPreprocessorConfig(type);
  RETURN_IF_ERROR(GetBool(j, "do_resize", &c.do_resize));
  RETURN_IF_ERROR(GetBool(j, "do_center_crop", &c.do_center_crop));
  RETURN_IF_ERROR(GetBool(j, "do_rescale", &c.do_rescale));
  RETURN_IF_ERROR(GetBool(j, "do_normalize", &c.do_normalize));
  RETURN_IF_ERROR(GetBool(j, "do_convert_rgb", &c.do_convert_rgb));
  if (Has(j, "size")) {
    const json& s = j.at("size");
    if (s.is_number()) {  // HF get_size_dict: CLIP reads an int as shortest_edge, SigLIP as square
      ASSIGN_OR_RETURN(int v, PositiveInt(s, "size"));
      if (type == "CLIPImageProcessor") {
        c.shortest_edge = v;
      } else {
        c.shortest_edge = 0;
        c.resize_height = c.resize_width = v;
      }
    } else if (s.is_object() && Has(s, "shortest_edge")) {
      ASSIGN_OR_RETURN(c.shortest_edge, PositiveInt(s.at("shortest_edge"), "size.shortest_edge"));
    } else if (s.is_object() && Has(s, "height") && Has(s, "width")) {
      c.shortest_edge = 0;
      ASSIGN_OR_RETURN(c.resize_height, PositiveInt(s.at("height"), "size.height"));
      ASSIGN_OR_RETURN(c.resize_width, PositiveInt(s.at("width"), "size.width"));
    } else {
      return KeyError("size", "must be an integer, {shortest_edge} or {height, width}");
    }
  }
  if (Has(j, "crop_size")) {
    const json& s = j.at("crop_size");
    if (s.is_number()) {
      ASSIGN_OR_RETURN(c.crop_height, PositiveInt(s, "crop_size"));
      c.crop_width = c.crop_height;
    } else if (s.is_object() && Has(s, "height") && Has(s, "width")) {
      ASSIGN_OR_RETURN(c.crop_height, PositiveInt(s.at("height"), "crop_size.height"));
      ASSIGN_OR_RETURN(c.crop_width, PositiveInt(s.at("width"), "crop_size.width"));
    } else {
      return KeyError("crop_size", "must be an integer or {height, width}");
    }
  }
  if (Has(j, "resample")) {
    if (!j.at("resample").is_number_integer()) return KeyError("resample", "must be an integer");
    c.resample = j.at("resample").get<int>();
    if (c.resample != 2 && c.resample != 3) {
      return KeyError("resample", absl::StrCat("value ", c.resample,
                                               " is not supported (2 = bilinear, 3 = bicubic)"));
    }
  }
  if (Has(j, "rescale_factor")) {
    if (!j.at("rescale_factor").is_number()) return KeyError("rescale_factor", "must be a number");
    c.rescale_factor = j.at("rescale_factor").get<double>();
  }
  RETURN_IF_ERROR(GetTriple(j, "image_mean", &c.image_mean));
  RETURN_IF_ERROR(GetTriple(j, "image_std", &c.image_std));
  for (float s : c.image_std) {
    if (!(s != 0.0f)) return KeyError("image_std", "must not contain zero");
  }
  return c;
}

}  // namespace

PreprocessorConfig DefaultPreprocessorConfig(const std::string& type) {
  PreprocessorConfig c;
  if (type == "SiglipImageProcessor") {
    c.image_processor_type = type;
    c.shortest_edge = 0;
    c.resize_height = c.resize_width = 224;
    c.do_center_crop = false;
    c.image_mean = {0.5f, 0.5f, 0.5f};
    c.image_std = {0.5f, 0.5f, 0.5f};
  }
  return c;
}

absl::StatusOr<PreprocessorConfig> ParsePreprocessorConfig(const std::string& json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return absl::InvalidArgumentError("preprocessor_config.json: not valid JSON");
  try {
    return ParseObject(j);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("preprocessor_config.json: ", e.what()));
  }
}

absl::StatusOr<PreprocessorConfig> LoadPreprocessorConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/preprocessor_config.json";
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(path));
  auto c = ParsePreprocessorConfig(text);
  if (!c.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", c.status().message()));
  return c;
}

std::string PreprocessorConfigToJson(const PreprocessorConfig& c) {
  json j;
  j["image_processor_type"] = c.image_processor_type;
  j["do_resize"] = c.do_resize;
  if (c.shortest_edge > 0) {
    j["size"] = {{"shortest_edge", c.shortest_edge}};
  } else {
    j["size"] = {{"height", c.resize_height}, {"width", c.resize_width}};
  }
  j["resample"] = c.resample;
  j["do_center_crop"] = c.do_center_crop;
  j["crop_size"] = {{"height", c.crop_height}, {"width", c.crop_width}};
  j["do_rescale"] = c.do_rescale;
  j["rescale_factor"] = c.rescale_factor;
  j["do_normalize"] = c.do_normalize;
  j["image_mean"] = c.image_mean;
  j["image_std"] = c.image_std;
  j["do_convert_rgb"] = c.do_convert_rgb;
  return j.dump(2) + "\n";
}

std::pair<int, int> ShortestEdgeOutputSize(int height, int width, int shortest_edge) {
  const bool w_short = width <= height;
  const int s = w_short ? width : height, l = w_short ? height : width;
  // Python: int(size * long / short), true division then truncation.
  const int new_long = static_cast<int>(static_cast<double>(shortest_edge) * l / s);
  return w_short ? std::make_pair(new_long, shortest_edge)
                 : std::make_pair(shortest_edge, new_long);
}

absl::StatusOr<Image> Resize(const Image& image, int out_h, int out_w, int resample) {
  if (out_h <= 0 || out_w <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("resize: output size ", out_h, "x", out_w, " must be positive"));
  }
  double (*filter)(double) = nullptr;
  double support = 0;
  if (resample == 3) {
    filter = BicubicFilter;
    support = 2.0;
  } else if (resample == 2) {
    filter = BilinearFilter;
    support = 1.0;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("resize: resample ", resample, " not supported"));
  }
  Image cur = image;
  if (out_w != image.width)
    cur = ResampleHorizontal(cur, out_w, PrecomputeCoeffs(image.width, out_w, filter, support));
  if (out_h != image.height)
    cur = ResampleVertical(cur, out_h, PrecomputeCoeffs(image.height, out_h, filter, support));
  return cur;
}

Image CenterCrop(const Image& image, int crop_height, int crop_width) {
  auto floordiv2 = [](int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  // Zero-pad to at least the crop size (padding split with the larger half first, as HF), then
  // crop.
  const int nh = std::max(crop_height, image.height), nw = std::max(crop_width, image.width);
  const int top_pad = (nh - image.height + 1) / 2, left_pad = (nw - image.width + 1) / 2;
  const int top = floordiv2(image.height - crop_height) + top_pad,
            left = floordiv2(image.width - crop_width) + left_pad;
  Image out;
  out.height = crop_height;
  out.width = crop_width;
  out.rgb.assign(static_cast<size_t>(crop_height) * crop_width * 3, 0);
  for (int y = 0; y < crop_height; ++y) {
    const int py = y + top - top_pad;  // row in the source image
    if (py < 0 || py >= image.height) continue;
    for (int x = 0; x < crop_width; ++x) {
      const int px = x + left - left_pad;
      if (px < 0 || px >= image.width) continue;
      std::copy_n(image.rgb.data() + (static_cast<size_t>(py) * image.width + px) * 3, 3,
                  out.rgb.data() + (static_cast<size_t>(y) * crop_width + x) * 3);
    }
  }
  return out;
}

absl::StatusOr<PixelValues> Preprocess(const Image& image, const PreprocessorConfig& c) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
    return absl::InvalidArgumentError("preprocess: image buffer does not match its dimensions");
  }
  Image cur = image;
  if (c.do_resize) {
    int h = c.resize_height, w = c.resize_width;
    if (c.shortest_edge > 0)
      std::tie(h, w) = ShortestEdgeOutputSize(image.height, image.width, c.shortest_edge);
    if (h <= 0 || w <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("preprocess: ", image.width, "x", image.height,
                                                     " image resizes to an empty ", w, "x", h));
    }
    if (h != cur.height || w != cur.width) {
      ASSIGN_OR_RETURN(cur, Resize(cur, h, w, c.resample));
    }
  }
  if (c.do_center_crop) cur = CenterCrop(cur, c.crop_height, c.crop_width);
  PixelValues out;
  out.height = cur.height;
  out.width = cur.width;
  const size_t plane = static_cast<size_t>(cur.height) * cur.width;
  out.data.resize(plane * 3);
  // HF: rescale in float64 then cast to float32; normalize in float32.
  for (int ch = 0; ch < 3; ++ch) {
    const float mean = c.image_mean[ch], std = c.image_std[ch];
    float* dst = out.data.data() + ch * plane;
    for (size_t i = 0; i < plane; ++i) {
      const uint8_t v = cur.rgb[i * 3 + ch];
      float x = c.do_rescale ? static_cast<float>(static_cast<double>(v) * c.rescale_factor)
                             : static_cast<float>(v);
      if (c.do_normalize) x = (x - mean) / std;
      dst[i] = x;
    }
  }
  return out;
}

}  // namespace muse::vision
