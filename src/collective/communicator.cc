#include "src/collective/communicator.h"

#include "absl/strings/str_cat.h"

namespace muse::collective {

absl::Status Communicator::BroadcastMessage(std::string* message, int root) {
  int64_t n = rank() == root ? static_cast<int64_t>(message->size()) : 0;
  RETURN_IF_ERROR(Broadcast(&n, sizeof(n), root));
  if (n < 0) return absl::InternalError(absl::StrCat("broadcast message size ", n));
  if (rank() != root) message->resize(static_cast<size_t>(n));
  if (n == 0) return absl::OkStatus();
  return Broadcast(message->data(), n, root);
}

}  // namespace muse::collective
