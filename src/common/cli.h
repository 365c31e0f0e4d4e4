// The command-line conventions every muse binary shares, on CLI11: generated --help on stdout
// (exit 0), usage errors on stderr naming the flag (exit 2), `--flag value` and `--flag=value`,
// `--` ends options. Header-only (CLI11 is header-only), in src/common so the tools, the server's
// flag declarations and the benchmarks share it.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

namespace muse::cli {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Help layout: "--max-num-seqs INT >=1   text (default: 64)"; CLI11's own puts the default
// after an '=' that reads like part of the range.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() { column_width(42); }

  std::string make_option_opts(const CLI::Option* opt) const override {
    std::string out;
    if (opt->get_type_size() != 0) {
      std::string type = opt->get_type_name();  // "INT:>=1": the type, then validator descriptions
      std::replace(type.begin(), type.end(), ':', ' ');
      if (!type.empty()) out += " " + type;
      if (opt->get_expected_max() == CLI::detail::expected_max_vector_size) out += " ...";
      if (opt->get_required()) out += " REQUIRED";
    }
    if (!opt->get_envname().empty()) out += " (env " + opt->get_envname() + ")";
    return out;
  }

  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string desc = opt->get_description();
    if (opt->get_type_size() != 0 && !opt->get_default_str().empty() &&
        opt->get_default_str() != "[]") {
      desc += " (default: " + opt->get_default_str() + ")";
    }
    auto names = [](const auto& options) {
      std::string s;
      for (const CLI::Option* o : options) s += (s.empty() ? "" : ", ") + o->get_name();
      return s;
    };
    if (!opt->get_needs().empty()) desc += " [needs " + names(opt->get_needs()) + "]";
    if (!opt->get_excludes().empty()) desc += " [excludes " + names(opt->get_excludes()) + "]";
    return desc;
  }
};

// Sets the shared help layout, error format and option defaults on `app`; call before adding
// options and subcommands (they inherit them).
inline void ConfigureApp(CLI::App& app) {
  app.formatter(std::make_shared<HelpFormatter>());
  // A repeated flag takes its last value (`$DEFAULT_ARGS --layers 3`); lists collect them all.
  app.option_defaults()->always_capture_default()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    std::string msg = e.what();
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
      // CLI11 lists them last-first; say it in command-line order.
      msg.clear();
      for (const std::string& arg : a->remaining(true)) msg += (msg.empty() ? "" : " ") + arg;
      msg = "unknown option or unexpected argument: " + msg;
    }
    return a->get_name() + ": " + msg + "\nRun with --help for more information.\n";
  });
}

// Parses argv into `app`. nullopt: go on. Otherwise the process exit code: 0 after --help
// (printed on stdout), kExitUsage after a usage error (printed on stderr).
inline std::optional<int> ParseCommandLine(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // On the root app: its help() delegates to the selected subcommand (`muse chat --help`).
    return app.exit(e, std::cout, std::cerr) == 0 ? 0 : kExitUsage;
  }
  return std::nullopt;
}

// A numeric validator "value >= lo" whose message reads "--flag: must be >= lo, got 'v'" (CLI11's
// Range would print the type's full limits). Validators see the text before conversion, so they
// also report what is not a number.
template <typename T>
CLI::Validator AtLeast(T lo) {
  std::ostringstream bound;
  bound << lo;
  return CLI::Validator(
      [lo, b = bound.str()](std::string& in) -> std::string {
        T v{};
        if (!CLI::detail::lexical_cast(in, v)) return "not a number: '" + in + "'";
        return v < lo ? "must be >= " + b + ", got " + in : std::string();
      },
      ">=" + bound.str());
}

// "value > lo", same message style.
template <typename T>
CLI::Validator Above(T lo) {
  std::ostringstream bound;
  bound << lo;
  return CLI::Validator(
      [lo, b = bound.str()](std::string& in) -> std::string {
        T v{};
        if (!CLI::detail::lexical_cast(in, v)) return "not a number: '" + in + "'";
        return v > lo ? std::string() : "must be > " + b + ", got " + in;
      },
      ">" + bound.str());
}

// "lo <= value <= hi", same message style.
template <typename T>
CLI::Validator InRange(T lo, T hi) {
  std::ostringstream bound;
  bound << "[" << lo << ", " << hi << "]";
  return CLI::Validator(
      [lo, hi, b = bound.str()](std::string& in) -> std::string {
        T v{};
        if (!CLI::detail::lexical_cast(in, v)) return "not a number: '" + in + "'";
        return v < lo || v > hi ? "must be in " + b + ", got " + in : std::string();
      },
      "in " + bound.str());
}

// Nucleus sampling mass: 0 < p <= 1.
inline const CLI::Validator kTopP(
    [](std::string& in) -> std::string {
      double v = 0;
      if (!CLI::detail::lexical_cast(in, v)) return "not a number: '" + in + "'";
      return v > 0 && v <= 1 ? std::string() : "must be in (0, 1], got " + in;
    },
    "in (0, 1]");

// Unsigned integers (seeds): CLI11 2.1 stores "-1" in an unsigned as 2^64 - 1.
inline const CLI::Validator kUnsigned(
    [](std::string& in) -> std::string {
      uint64_t v = 0;
      if (!in.empty() && in[0] != '-' && CLI::detail::lexical_cast(in, v)) return "";
      return "expected an integer >= 0, got '" + in + "'";
    },
    "");

// A string flag that may not be empty ("--prompt ''").
inline const CLI::Validator kNonEmpty(
    [](std::string& in) -> std::string { return in.empty() ? "must not be empty" : std::string(); },
    "");

}  // namespace muse::cli
