// The client side of a muse-bench connection, shared by the load runner and the soak harness:
// one channel per HTTP/2 connection and the API-key header.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace muse::bench {

// A channel with its own TCP connection (`index` distinguishes otherwise equal channels) and no
// message size limits.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, int index);

// "authorization: Bearer <key>" when `api_key` is set.
void AddAuth(const std::string& api_key, grpc::ClientContext* ctx);

}  // namespace muse::bench
