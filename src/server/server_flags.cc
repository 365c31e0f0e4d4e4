// Command-line flags of muse-server (documented in tools/server_main.cc).
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "src/server/server.h"

namespace muse::server {

absl::StatusOr<ServerOptions> ParseServerFlags(int argc, char** argv, std::string* log_level,
                                               double* drain_grace_seconds) {
  ServerOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, ": needs a value"));
      return std::string(argv[++i]);
    };
    auto int_value = [&](auto* dst, int64_t lo) -> absl::Status {
      ASSIGN_OR_RETURN(std::string v, value());
      int64_t x;
      if (!absl::SimpleAtoi(v, &x) || x < lo) {
        return absl::InvalidArgumentError(absl::StrCat(flag, ": expected an integer >= ", lo, ", got '", v, "'"));
      }
      *dst = static_cast<std::remove_pointer_t<decltype(dst)>>(x);
      return absl::OkStatus();
    };
    auto str_value = [&](std::string* dst) -> absl::Status {
      ASSIGN_OR_RETURN(*dst, value());
      return absl::OkStatus();
    };
    absl::Status st;
    if (flag == "--model") st = str_value(&o.model_dir);
    else if (flag == "--served-model-name") st = str_value(&o.served_model_name);
    else if (flag == "--host") st = str_value(&o.host);
    else if (flag == "--port") st = int_value(&o.port, 0);
    else if (flag == "--device") st = str_value(&o.device);
    else if (flag == "--dtype") st = str_value(&o.dtype);
    else if (flag == "--threads") st = int_value(&o.threads, 0);
    else if (flag == "--max-num-seqs") st = int_value(&o.max_num_seqs, 1);
    else if (flag == "--max-num-batched-tokens") st = int_value(&o.max_num_batched_tokens, 1);
    else if (flag == "--max-waiting") st = int_value(&o.max_waiting, 1);
    else if (flag == "--kv-cache-bytes") st = int_value(&o.kv_cache_bytes, 1);
    else if (flag == "--num-kv-blocks") st = int_value(&o.num_kv_blocks, 0);
    else if (flag == "--max-model-len") st = int_value(&o.max_model_len, 0);
    else if (flag == "--seed") st = int_value(&o.seed, 0);
    else if (flag == "--api-keys") st = str_value(&o.api_keys_file);
    else if (flag == "--no-auth") o.no_auth = true;
    else if (flag == "--tls-cert") st = str_value(&o.tls_cert);
    else if (flag == "--tls-key") st = str_value(&o.tls_key);
    else if (flag == "--tls-client-ca") st = str_value(&o.tls_client_ca);
    else if (flag == "--metrics-port") st = int_value(&o.metrics_port, -1);
    else if (flag == "--max-receive-message-bytes") st = int_value(&o.max_receive_message_bytes, 1024);
    else if (flag == "--encoder-cache-bytes") st = int_value(&o.encoder_cache_bytes, 0);
    else if (flag == "--max-image-bytes") st = int_value(&o.max_image_bytes, 1);
    else if (flag == "--max-image-pixels") st = int_value(&o.max_image_pixels, 1);
    else if (flag == "--log-level") st = str_value(log_level);
    else if (flag == "--drain-grace-seconds") {
      ASSIGN_OR_RETURN(std::string v, value());
      if (!absl::SimpleAtod(v, drain_grace_seconds) || *drain_grace_seconds < 0) {
        return absl::InvalidArgumentError(absl::StrCat(flag, ": expected seconds >= 0, got '", v, "'"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag, " (see --help)"));
    }
    RETURN_IF_ERROR(st);
  }
  return o;
}

}  // namespace muse::server
