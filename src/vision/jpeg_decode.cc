// JPEG -> 8-bit RGB with libjpeg-turbo, for untrusted input.
//
// libjpeg reports errors by calling error_exit, which must not return: we longjmp back into the
// function that made the failing library call. Those functions (Jpeg*Phase below) hold only
// trivially destructible locals and call nothing but libjpeg, so the longjmp skips no C++
// destructor; the caller owns every C++ object and always runs jpeg_destroy_decompress, which
// frees everything libjpeg allocated whatever state it was left in.
// jpeglib.h needs FILE and size_t declared first.
// clang-format off
#include <cstdio>
#include <jerror.h>
#include <jpeglib.h>
// clang-format on

#include <csetjmp>
#include <cstring>
#include <memory>
#include <vector>

#include "src/vision/image_decoders.h"

namespace muse::vision::internal {
namespace {

// Progressive JPEGs may carry any number of scans, each a pass over the whole coefficient buffer:
// a small file can cost minutes of CPU. Real encoders write ~10; libjpeg-turbo's fuzzers cap 500.
constexpr int kMaxJpegScans = 500;

struct JpegErrorMgr {
  jpeg_error_mgr pub;  // first member: libjpeg sees a jpeg_error_mgr*
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void FailWith(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorMgr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void OnErrorExit(j_common_ptr cinfo) { FailWith(cinfo); }

void OnOutputMessage(j_common_ptr) {}  // never write to stderr

// Warnings (level -1) are corrupt-but-decodable data, which PIL also decodes; running out of data
// is the exception: PIL's suspending source then raises "image file is truncated", so we fail too
// instead of returning libjpeg's grey fill for the missing rows. (The entropy decoder reads ahead
// to the EOI marker, so a file missing only its EOI is refused as well, as in PIL.)
void OnEmitMessage(j_common_ptr cinfo, int level) {
  if (level < 0) {
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) FailWith(cinfo);
    ++cinfo->err->num_warnings;
  }
}

void OnProgress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxJpegScans) {
    auto* err = reinterpret_cast<JpegErrorMgr*>(cinfo->err);
    std::snprintf(err->message, sizeof(err->message), "more than %d progressive scans",
                  kMaxJpegScans);
    std::longjmp(err->jump, 1);
  }
}

struct JpegState {
  jpeg_decompress_struct cinfo;
  JpegErrorMgr err;
  jpeg_progress_mgr progress;
};

// ---- setjmp phases: trivially destructible locals only, libjpeg calls only ----

bool JpegCreatePhase(JpegState* s) {
  if (setjmp(s->err.jump)) return false;
  jpeg_create_decompress(&s->cinfo);
  return true;
}

bool JpegHeaderPhase(JpegState* s, const uint8_t* data, size_t size) {
  if (setjmp(s->err.jump)) return false;
  jpeg_mem_src(&s->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&s->cinfo, TRUE);  // require_image: a tables-only stream is an error
  return true;
}

// Decodes into rgb ([h, w, 3]); `scratch` holds one CMYK row when out_color_space is JCS_CMYK.
bool JpegDecodePhase(JpegState* s, uint8_t* rgb, uint8_t* scratch) {
  if (setjmp(s->err.jump)) return false;
  j_decompress_ptr c = &s->cinfo;
  jpeg_start_decompress(c);
  if (c->output_width != c->image_width || c->output_height != c->image_height ||
      c->output_components != (c->out_color_space == JCS_CMYK ? 4 : 3)) {
    std::snprintf(s->err.message, sizeof(s->err.message), "unexpected output geometry %ux%ux%d",
                  c->output_width, c->output_height, c->output_components);
    return false;
  }
  const size_t row_bytes = size_t{c->output_width} * 3;
  while (c->output_scanline < c->output_height) {
    uint8_t* out = rgb + c->output_scanline * row_bytes;
    JSAMPROW row = c->out_color_space == JCS_CMYK ? scratch : out;
    if (jpeg_read_scanlines(c, &row, 1) != 1) continue;  // suspension cannot happen with mem src
    if (c->out_color_space == JCS_CMYK) {
      // PIL opens CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts with cmyk2rgb:
      // r = 255 - k' - c'(255 - k')/255 with inverted c', k', rounded as its MULDIV255.
      for (JDIMENSION x = 0; x < c->output_width; ++x) {
        const uint8_t* p = scratch + size_t{x} * 4;
        const int nk = p[3];  // 255 - (255 - raw k)
        for (int k = 0; k < 3; ++k) {
          const int t = (255 - p[k]) * nk + 128;
          const int v = nk - (((t >> 8) + t) >> 8);
          out[size_t{x} * 3 + k] = static_cast<uint8_t>(v < 0 ? 0 : v);
        }
      }
    }
  }
  // No jpeg_finish_decompress: like PIL, markers after the last scan are not parsed.
  return true;
}

absl::Status JpegError(const char* what, const JpegState& s) {
  return absl::InvalidArgumentError(absl::StrCat("image: ", what, " (", s.err.message, ")"));
}

}  // namespace

absl::StatusOr<Image> DecodeJpeg(const uint8_t* data, size_t size, const DecodeLimits& limits) {
  if (size > 0xffffffffull) return absl::InvalidArgumentError("image: JPEG larger than 4 GiB");
  // Heap-allocated so the jmp_buf and libjpeg state have a stable address across phases.
  auto s = std::make_unique<JpegState>();
  std::memset(s.get(), 0, sizeof(JpegState));
  s->cinfo.err = jpeg_std_error(&s->err.pub);
  s->err.pub.error_exit = OnErrorExit;
  s->err.pub.output_message = OnOutputMessage;
  s->err.pub.emit_message = OnEmitMessage;
  s->err.message[0] = '\0';
  s->progress.progress_monitor = OnProgress;
  struct Destroy {
    JpegState* s;
    ~Destroy() { jpeg_destroy_decompress(&s->cinfo); }  // safe on a partly created object
  } destroy{s.get()};

  if (!JpegCreatePhase(s.get())) return JpegError("JPEG decoder setup failed", *s);
  s->cinfo.progress = &s->progress;
  if (!JpegHeaderPhase(s.get(), data, size)) return JpegError("invalid JPEG header", *s);

  jpeg_decompress_struct& c = s->cinfo;
  RETURN_IF_ERROR(CheckDimensions("JPEG", c.image_width, c.image_height, limits));
  switch (c.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
      c.out_color_space = JCS_RGB;  // grey is replicated, as PIL's L -> RGB
      break;
    case JCS_CMYK:
    case JCS_YCCK:
      c.out_color_space = JCS_CMYK;  // libjpeg turns YCCK into CMYK; CMYK -> RGB is ours
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("image: unsupported JPEG color space (",
                                                     c.num_components,
                                                     " components, libjpeg "
                                                     "color space ",
                                                     c.jpeg_color_space, ")"));
  }
  // PIL's defaults, spelled out: these decide the exact pixel values.
  c.dct_method = JDCT_ISLOW;
  c.do_fancy_upsampling = TRUE;
  c.do_block_smoothing = TRUE;
  c.scale_num = c.scale_denom = 1;
  c.quantize_colors = FALSE;

  Image img;
  img.width = static_cast<int>(c.image_width);
  img.height = static_cast<int>(c.image_height);
  img.rgb.resize(size_t{c.image_width} * c.image_height * 3);
  std::vector<uint8_t> scratch(c.out_color_space == JCS_CMYK ? size_t{c.image_width} * 4 : 0);
  if (!JpegDecodePhase(s.get(), img.rgb.data(), scratch.data())) {
    return JpegError("corrupt or truncated JPEG", *s);
  }
  return img;
}

}  // namespace muse::vision::internal
