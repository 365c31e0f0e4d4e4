#include "benchmarks/bench/client_channel.h"

namespace muse::bench {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, int index) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // A distinct arg + a local subchannel pool give each channel its own TCP connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("muse.bench.channel_index", index);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

void AddAuth(const std::string& api_key, grpc::ClientContext* ctx) {
  if (!api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key);
}

}  // namespace muse::bench
