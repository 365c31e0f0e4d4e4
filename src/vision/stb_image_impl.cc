// The only translation unit that compiles stb_image; restricted to PNG and JPEG from memory.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_HDR
#define STBI_NO_LINEAR
// stb's own cap; our configurable limits are checked from the header first and are tighter.
#define STBI_MAX_DIMENSIONS (1 << 16)
#include <stb/stb_image.h>

#include "src/vision/stb_decode.h"

namespace muse::vision::stb {

bool Info(const uint8_t* data, int len, int* width, int* height, int* channels) {
  return stbi_info_from_memory(data, len, width, height, channels) != 0;
}

uint8_t* LoadRgb(const uint8_t* data, int len, int* width, int* height) {
  int channels = 0;
  return stbi_load_from_memory(data, len, width, height, &channels, 3);
}

void Free(void* pixels) { stbi_image_free(pixels); }

const char* FailureReason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown error";
}

}  // namespace muse::vision::stb
