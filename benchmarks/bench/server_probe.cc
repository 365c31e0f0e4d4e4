#include "benchmarks/bench/server_probe.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace muse::bench {
namespace {

absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path,
                                    double timeout_s) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  const std::string ip = host == "localhost" ? "127.0.0.1" : host;
  if (::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("metrics host must be an IPv4 address: ", host));
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", host, ":", port));
  }
  const std::string req =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host, "\r\nConnection: close\r\n\r\n");
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string resp;
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  char buf[16384];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          give_up - std::chrono::steady_clock::now())
                          .count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
      ::close(fd);
      return absl::DeadlineExceededError(absl::StrCat("GET ", path, " timed out"));
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      ::close(fd);
      return absl::UnavailableError("recv failed");
    }
    if (n == 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t body = resp.find("\r\n\r\n");
  if (body == std::string::npos || !absl::StartsWith(resp, "HTTP/1.")) {
    return absl::DataLossError("malformed HTTP response");
  }
  if (resp.find(" 200 ") > resp.find("\r\n")) {
    return absl::UnavailableError(
        absl::StrCat("GET ", path, ": ", resp.substr(0, resp.find("\r\n"))));
  }
  return resp.substr(body + 4);
}

}  // namespace

absl::StatusOr<PromSamples> ScrapeMetrics(const std::string& host, int port, double timeout_s) {
  auto body = HttpGet(host, port, "/metrics", timeout_s);
  if (!body.ok()) return body.status();
  PromSamples out;
  for (absl::string_view line : absl::StrSplit(*body, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    const size_t sp = line.rfind(' ');
    if (sp == absl::string_view::npos) continue;
    double v = 0;
    if (!absl::SimpleAtod(line.substr(sp + 1), &v)) continue;
    out[std::string(line.substr(0, sp))] = v;
  }
  return out;
}

double SampleOr(const PromSamples& s, const std::string& series, double fallback) {
  auto it = s.find(series);
  return it == s.end() ? fallback : it->second;
}

std::map<std::string, int64_t> RequestCodes(const PromSamples& s,
                                            const std::vector<std::string>& methods) {
  std::map<std::string, int64_t> codes;
  for (const std::string& m : methods) {
    const std::string prefix = absl::StrCat("muse_requests_total{method=\"", m, "\",code=\"");
    for (auto it = s.lower_bound(prefix); it != s.end() && absl::StartsWith(it->first, prefix);
         ++it) {
      std::string code = it->first.substr(prefix.size());
      code = code.substr(0, code.find('"'));
      codes[code] += static_cast<int64_t>(it->second);
    }
  }
  return codes;
}

absl::StatusOr<int64_t> ProcessRssBytes(int64_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  if (!f) return absl::NotFoundError(absl::StrCat("no process ", pid));
  for (std::string line; std::getline(f, line);) {
    if (!absl::StartsWith(line, "VmRSS:")) continue;
    int64_t kb = 0;
    absl::string_view v = absl::string_view(line).substr(6);
    absl::ConsumeSuffix(&v, "kB");
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &kb)) break;
    return kb * 1024;
  }
  return absl::DataLossError(absl::StrCat("no VmRSS in /proc/", pid, "/status"));
}

absl::StatusOr<int64_t> PidListeningOn(int port) {
  // /proc/net/tcp: "sl local_address rem_address st ... inode"; local port in hex, st 0A = LISTEN.
  std::string inode;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream f(table);
    std::string line;
    std::getline(f, line);  // header
    while (inode.empty() && std::getline(f, line)) {
      std::vector<std::string> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (cols.size() < 10 || cols[3] != "0A") continue;
      const std::string& local = cols[1];
      const int p =
          static_cast<int>(std::strtol(local.substr(local.find(':') + 1).c_str(), nullptr, 16));
      if (p == port) inode = cols[9];
    }
  }
  if (inode.empty()) return absl::NotFoundError(absl::StrCat("nothing listens on port ", port));
  const std::string want = absl::StrCat("socket:[", inode, "]");
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return absl::InternalError("cannot read /proc");
  int64_t found = -1;
  while (dirent* e = ::readdir(proc)) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    const std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
    DIR* fds = ::opendir(fd_dir.c_str());
    if (fds == nullptr) continue;  // another user's process
    while (dirent* d = ::readdir(fds)) {
      char target[128];
      const std::string link = absl::StrCat(fd_dir, "/", d->d_name);
      const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
      if (n > 0 && std::string(target, static_cast<size_t>(n)) == want) {
        found = pid;
        break;
      }
    }
    ::closedir(fds);
    if (found >= 0) break;
  }
  ::closedir(proc);
  if (found < 0) {
    return absl::NotFoundError(absl::StrCat(
        "port ", port, " is open but its process is not readable (pass --server-pid)"));
  }
  return found;
}

namespace {

// "2026-12-06T20:07:26.676 E ..." (muse's spdlog pattern) or "E1206 20:07:26.676000 ..." (gRPC,
// absl). Colour escapes (a TTY log) are skipped.
bool IsErrorLine(absl::string_view line) {
  // Sanitizer reports in a sanitized server's stderr.
  for (const char* report : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                             "WARNING: ThreadSanitizer", ": runtime error: "}) {
    if (absl::StrContains(line, report)) return true;
  }
  if (absl::StartsWith(line, "\x1b[")) line.remove_prefix(line.find('m') + 1);
  if (line.size() > 5 && (line[0] == 'E' || line[0] == 'F') && std::isdigit(line[1]) &&
      std::isdigit(line[4]) && line[5] == ' ') {
    return true;
  }
  const size_t sp = line.find(' ');
  if (sp == absl::string_view::npos || sp < 10 || !std::isdigit(line[0])) return false;
  absl::string_view rest = line.substr(sp + 1);
  if (absl::StartsWith(rest, "\x1b[")) rest.remove_prefix(rest.find('m') + 1);
  return rest.size() >= 2 && (rest[0] == 'E' || rest[0] == 'C') &&
         (rest[1] == ' ' || rest[1] == '\x1b');
}

}  // namespace

absl::StatusOr<LogScan> ScanLogErrors(const std::string& path, int64_t offset,
                                      const std::vector<std::string>& expected) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open log ", path));
  f.seekg(0, std::ios::end);
  LogScan scan;
  scan.end_offset = static_cast<int64_t>(f.tellg());
  f.seekg(std::min(offset, scan.end_offset));
  for (std::string line; std::getline(f, line);) {
    ++scan.lines;
    if (!IsErrorLine(line)) continue;
    bool ok = false;
    for (const std::string& e : expected) ok = ok || absl::StrContains(line, e);
    if (ok) {
      ++scan.expected_errors;
    } else {
      ++scan.unexpected_count;
      if (scan.unexpected.size() < 20) scan.unexpected.push_back(line);
    }
  }
  return scan;
}

}  // namespace muse::bench
