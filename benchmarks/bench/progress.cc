#include "benchmarks/bench/progress.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_format.h"

namespace muse::bench {

ProgressBar::ProgressBar(const RunProgress* progress, std::string label, int64_t total,
                         double duration_s)
    : progress_(progress),
      label_(std::move(label)),
      total_(total),
      duration_s_(duration_s),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_line_(start_),
      thread_([this] { Loop(); }) {}

ProgressBar::~ProgressBar() {
  stop_ = true;
  thread_.join();
  Draw(true);
}

void ProgressBar::Loop() {
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(tty_ ? 100 : 500));
    if (!stop_) Draw(false);
  }
}

void ProgressBar::Draw(bool final) {
  const auto now = std::chrono::steady_clock::now();
  const double t = std::chrono::duration<double>(now - start_).count();
  const int64_t done = progress_->done.load(), sent = progress_->sent.load();
  const int64_t failed = progress_->failed.load(), tokens = progress_->output_tokens.load();
  double frac = total_ > 0 ? static_cast<double>(done) / total_
                           : (duration_s_ > 0 ? std::min(1.0, t / duration_s_) : 0.0);
  if (final) frac = 1.0;
  const std::string stats =
      absl::StrFormat("%d/%s done, %d in flight, %d failed, %.1f req/s, %.0f tok/s, %.1fs", done,
                      total_ > 0 ? absl::StrFormat("%d", total_) : "?", sent - done, failed,
                      t > 0 ? done / t : 0.0, t > 0 ? tokens / t : 0.0, t);
  if (tty_) {
    constexpr int kWidth = 30;
    const int fill = static_cast<int>(frac * kWidth);
    absl::FPrintF(stderr, "\r\033[K%s [%s%s] %3.0f%% %s%s", label_, std::string(fill, '#'),
                  std::string(kWidth - fill, ' '), frac * 100, stats, final ? "\n" : "");
    return;
  }
  const int decile = static_cast<int>(frac * 10);
  if (final || decile > last_decile_ || now - last_line_ > std::chrono::seconds(10)) {
    last_decile_ = decile;
    last_line_ = now;
    absl::FPrintF(stderr, "%s %3.0f%% %s\n", label_, frac * 100, stats);
  }
}

}  // namespace muse::bench
