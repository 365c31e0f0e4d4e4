// Helpers shared by the jinja unit tests.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "src/tokenizer/jinja/chat_template.h"

namespace muse::jinja::testing {

// Parses and renders; returns the output or "ERROR: <status message>".
inline std::string RenderOrError(const std::string& source,
                                 const std::string& context_json = "{}") {
  auto tmpl = ChatTemplate::Parse(source);
  if (!tmpl.ok()) return "PARSE ERROR: " + std::string(tmpl.status().message());
  auto out = tmpl->Render(nlohmann::ordered_json::parse(context_json));
  if (!out.ok()) return "ERROR: " + std::string(out.status().message());
  return *out;
}

}  // namespace muse::jinja::testing
