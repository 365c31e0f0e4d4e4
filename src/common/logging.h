// Logging through spdlog. Request-scoped lines carry the request id: MUSE_LOG_REQ(info, id, ...).
// Logs go to stderr so that a binary's stdout holds only its results (`cmd > out`).
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace muse {

// Call first in main(): makes the default logger a stderr (color when a terminal) logger and sets
// its level from a name (trace, debug, info, warn, error, critical, off; unknown names keep info).
void InitLogging(std::string_view level);

}  // namespace muse

#define MUSE_LOG_REQ(level, req_id, fmt, ...) \
  ::spdlog::level("[req {}] " fmt, req_id __VA_OPT__(, ) __VA_ARGS__)
