// Test helpers for absl::Status results.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/status/status.h"

// expr is an absl::StatusOr<T>: expects INVALID_ARGUMENT whose message contains substr.
#define EXPECT_INVALID(expr, substr)                                       \
  do {                                                                     \
    auto _st = (expr).status();                                            \
    EXPECT_EQ(_st.code(), absl::StatusCode::kInvalidArgument) << _st;      \
    EXPECT_THAT(std::string(_st.message()), ::testing::HasSubstr(substr)); \
  } while (0)
