// Thin wrapper over stb_image (PNG and JPEG only), so stb's implementation lives in exactly one
// translation unit (stb_image_impl.cc). Memory input only; no file access.
#pragma once

#include <cstdint>

namespace muse::vision::stb {

// Header-only probe (stbi_info_from_memory): true and the dimensions when the header parses.
bool Info(const uint8_t* data, int len, int* width, int* height, int* channels);
// Full decode to 8-bit RGB (grey replicated, alpha dropped). nullptr on failure; free with Free.
uint8_t* LoadRgb(const uint8_t* data, int len, int* width, int* height);
void Free(void* pixels);
// stb's reason for the last failure on this thread (stb keeps it thread-local).
const char* FailureReason();

}  // namespace muse::vision::stb
