// The dtype names every ATen path takes (`--dtype`, ImageEncoderOptions / AudioEncoderOptions
// .dtype) -> the ATen scalar type; InvalidArgument naming `dtype` otherwise.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "src/common/status.h"

namespace muse::models {

inline absl::StatusOr<at::ScalarType> ParseAtenDtype(const std::string& s) {
  if (s == "float32" || s == "fp32") return at::kFloat;
  if (s == "bfloat16" || s == "bf16") return at::kBFloat16;
  if (s == "float16" || s == "fp16") return at::kHalf;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype: '", s, "' is not one of float32, bfloat16, float16"));
}

}  // namespace muse::models
