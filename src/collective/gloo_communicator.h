// The Gloo backend of Communicator (Debian libgloo-dev): TCP pairs between every two ranks, set up
// through a rendezvous store in a directory every rank can see (a temp dir for tests and for the
// processes muse-server starts on one machine). Why Gloo: it is the CPU collective engine torch
// itself uses (Debian's libtorch links it), with ring / halving-doubling algorithms and peer
// failure reported as exceptions rather than hangs; home-made sockets would re-solve all of that.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "src/collective/communicator.h"

namespace muse::collective {

struct GlooOptions {
  int rank = 0;
  int size = 1;
  // Rendezvous: a directory shared by all ranks (created if missing). `prefix` separates groups
  // that share it (e.g. one per server instance); ranks of one group use the same prefix.
  std::string store_dir;
  std::string prefix = "muse";
  // The address this rank listens on for its peers.
  std::string hostname = "127.0.0.1";
  // Connection set-up and every collective fail as Unavailable after this long without progress.
  absl::Duration timeout = absl::Seconds(30);
};

// Connects to every other rank (blocks until all `size` ranks have joined or the timeout passes).
// InvalidArgument naming the field for a bad rank / size / empty store_dir; Unavailable naming the
// rank when a peer does not join in time.
absl::StatusOr<std::unique_ptr<Communicator>> ConnectGloo(const GlooOptions& options);

}  // namespace muse::collective
