// Live progress on stderr: a redrawn bar on a TTY, a line every ~10 % (or 10 s) otherwise.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "benchmarks/bench/load_runner.h"

namespace muse::bench {

class ProgressBar {
 public:
  // total = expected requests (0 = unknown, duration-bounded: then duration_s sets the bar).
  ProgressBar(const RunProgress* progress, std::string label, int64_t total, double duration_s);
  ~ProgressBar();  // stops and prints the final state

 private:
  void Loop();
  void Draw(bool final);

  const RunProgress* progress_;
  std::string label_;
  int64_t total_;
  double duration_s_;
  bool tty_;
  std::atomic<bool> stop_{false};
  std::chrono::steady_clock::time_point start_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point last_line_;
  std::thread thread_;
};

}  // namespace muse::bench
