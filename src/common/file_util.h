// Whole-file reads for configs, keys, templates and certificates: one place that opens, reads and
// reports errors that name the path. (Weights are mmapped by models/safetensors, not read here.)
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "src/common/status.h"

namespace muse {

// The file's bytes. NotFound "<path>: cannot open (<reason>)" when it cannot be opened,
// DataLoss "<path>: read error" when reading fails part-way.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// ReadFile + JSON parse. InvalidArgument "<path>: not valid JSON: <parser message>" on bad JSON.
absl::StatusOr<nlohmann::json> ParseJsonFile(const std::string& path);

}  // namespace muse
