#include "src/common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <memory>
#include <string>

namespace muse {

void InitLogging(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  // from_str returns `off` for unknown names; only accept it when asked for explicitly.
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  // spdlog's own default logger writes to stdout, where results go. Replacing (not registering by
  // name) keeps a second call harmless.
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_level(lvl);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %v");
}

}  // namespace muse
