#include "src/common/logging.h"

#include <string>

namespace muse {

void InitLogging(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  // from_str returns `off` for unknown names; only accept it when asked for explicitly.
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  spdlog::set_level(lvl);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %v");
}

}  // namespace muse
