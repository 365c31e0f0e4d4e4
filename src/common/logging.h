// Logging through spdlog. Request-scoped lines carry the request id: MUSE_LOG_REQ(info, id, ...).
#pragma once

#include <string_view>

#include <spdlog/spdlog.h>

namespace muse {

// Sets the global level from a name (trace, debug, info, warn, error, off); unknown names keep info.
void InitLogging(std::string_view level);

}  // namespace muse

#define MUSE_LOG_REQ(level, req_id, fmt, ...) \
  ::spdlog::level("[req {}] " fmt, req_id __VA_OPT__(, ) __VA_ARGS__)
