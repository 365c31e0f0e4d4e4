// TLS, mTLS and server reflection against the real server in-process (tiny random checkpoint,
// Llama 3 tokenizer). The PKI is generated at test time with OpenSSL's libcrypto (the one gRPC
// links on Debian) into a temp dir; no key material is committed.
//
//   CA  -> server (SAN IP:127.0.0.1, DNS:localhost), client
//   CA2 -> client2 (unrelated: must be rejected by an mTLS server that trusts only CA)
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>  // mkdtemp
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "src/common/file_util.h"
#include "src/server/server.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;
namespace fs = std::filesystem;
namespace pb = google::protobuf;

std::string Slurp(const std::string& path) {
  auto text = muse::ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *std::move(text) : std::string();
}

// Generated certificates: EC P-256 keys, SHA-256 signatures, valid from an hour ago for 2 days.
using PKeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

struct Issued {
  PKeyPtr key{nullptr, EVP_PKEY_free};
  X509Ptr cert{nullptr, X509_free};
};

// `issuer` null: self-signed. `exts`: (NID, openssl.cnf-style value) in order.
bool Issue(const std::string& cn, const std::vector<std::pair<int, std::string>>& exts,
           const Issued* issuer, long serial, Issued* out) {
  out->key.reset(EVP_EC_gen("P-256"));
  out->cert.reset(X509_new());
  X509* x = out->cert.get();
  if (!out->key || !x) return false;
  X509_NAME* name = X509_get_subject_name(x);
  bool ok =
      X509_set_version(x, 2) && ASN1_INTEGER_set(X509_get_serialNumber(x), serial) &&
      X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
      X509_gmtime_adj(X509_getm_notAfter(x), 2 * 86400) && X509_set_pubkey(x, out->key.get()) &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer ? issuer->cert.get() : x;
  EVP_PKEY* issuer_key = issuer ? issuer->key.get() : out->key.get();
  ok = ok && X509_set_issuer_name(x, X509_get_subject_name(issuer_cert));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert, x, nullptr, nullptr, 0);
  for (const auto& [nid, value] : exts) {
    if (!ok) break;
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    ok = e != nullptr && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }
  return ok && X509_sign(x, issuer_key, EVP_sha256()) > 0;
}

bool WritePem(const std::string& path, const Issued& kc, bool key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  const int ok =
      key ? PEM_write_bio_PrivateKey(bio.get(), kc.key.get(), nullptr, nullptr, 0, nullptr, nullptr)
          : PEM_write_bio_X509(bio.get(), kc.cert.get());
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  if (!ok || n <= 0) return false;
  std::ofstream out(path, std::ios::binary);
  out.write(data, n);
  return static_cast<bool>(out);
}

// Test PKI in a fresh temp dir: PEM file paths. Removed at process exit (TlsEnvironment).
struct Pki {
  std::string dir, error;
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string other_ca, other_client_cert, other_client_key;

  static const Pki& Get() {
    static const Pki pki = Generate();
    return pki;
  }

 private:
  static Pki Generate() {
    Pki p;
    std::string tmpl = (fs::temp_directory_path() / "muse_tls_test_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      p.error = "mkdtemp failed";
      return p;
    }
    p.dir = tmpl;
    const std::vector<std::pair<int, std::string>> ca_ext = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"}};
    auto leaf_ext = [](const std::string& eku, const std::string& san) {
      std::vector<std::pair<int, std::string>> e = {
          {NID_basic_constraints, "critical,CA:FALSE"},
          {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
          {NID_ext_key_usage, eku},
          {NID_subject_key_identifier, "hash"},
          {NID_authority_key_identifier, "keyid"}};
      if (!san.empty()) e.push_back({NID_subject_alt_name, san});
      return e;
    };
    Issued ca, server, client, other_ca, other_client;
    const bool issued =
        Issue("muse test CA", ca_ext, nullptr, 1, &ca) &&
        Issue("localhost", leaf_ext("serverAuth", "IP:127.0.0.1,DNS:localhost"), &ca, 2, &server) &&
        Issue("muse test client", leaf_ext("clientAuth", ""), &ca, 3, &client) &&
        Issue("muse unrelated CA", ca_ext, nullptr, 1, &other_ca) &&
        Issue("muse test client", leaf_ext("clientAuth", ""), &other_ca, 2, &other_client);
    if (!issued) {
      p.error = "certificate generation failed: " +
                std::string(ERR_error_string(ERR_get_error(), nullptr));
      return p;
    }
    auto f = [&](const std::string& name) { return p.dir + "/" + name; };
    p.ca = f("ca.pem");
    p.server_cert = f("server.pem");
    p.server_key = f("server.key");
    p.client_cert = f("client.pem");
    p.client_key = f("client.key");
    p.other_ca = f("other_ca.pem");
    p.other_client_cert = f("other_client.pem");
    p.other_client_key = f("other_client.key");
    const bool written =
        WritePem(p.ca, ca, false) && WritePem(p.server_cert, server, false) &&
        WritePem(p.server_key, server, true) && WritePem(p.client_cert, client, false) &&
        WritePem(p.client_key, client, true) && WritePem(p.other_ca, other_ca, false) &&
        WritePem(p.other_client_cert, other_client, false) &&
        WritePem(p.other_client_key, other_client, true);
    if (!written) p.error = "cannot write PEM files under " + p.dir;
    return p;
  }
};

// Removes this process's temp files: the PKI and the tiny checkpoint (per-pid, see test_util.h).
class TlsEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    if (!Pki::Get().dir.empty()) fs::remove_all(Pki::Get().dir, ec);
    fs::remove_all(fs::temp_directory_path() / ("muse_server_test_" + std::to_string(::getpid())),
                   ec);
  }
};
[[maybe_unused]] const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new TlsEnvironment);

ServerOptions BaseOptions() {
  ServerOptions o;
  o.model_dir = TinyModelDir();
  o.host = "127.0.0.1";
  o.port = 0;
  o.threads = 1;
  o.num_kv_blocks = 64;
  o.max_num_seqs = 4;
  o.api_keys_file = TinyModelDir() + "/api_keys.json";
  o.seed = 1;
  o.http_port = kEphemeralPort;  // the OpenAI HTTP API takes the same certificate flags
  return o;
}

struct ClientCert {
  std::string cert, key;  // file paths; empty = no client certificate
};

// GET /v1/models over HTTPS (Beast + asio::ssl, verifying the server as "localhost" against
// `root_ca`): the HTTP status, or -1 when the TLS handshake or the exchange fails.
int HttpsModels(int port, const std::string& root_ca, const ClientCert& client = {}) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  asio::io_context ioc;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  beast::error_code ec;
  tls.load_verify_file(root_ca, ec);
  if (!client.cert.empty()) {
    tls.use_certificate_chain_file(client.cert, ec);
    tls.use_private_key_file(client.key, asio::ssl::context::pem, ec);
  }
  if (ec) return -1;
  asio::ssl::stream<beast::tcp_stream> stream(ioc, tls);
  stream.set_verify_mode(asio::ssl::verify_peer);
  stream.set_verify_callback(asio::ssl::host_name_verification("localhost"));
  SSL_set_tlsext_host_name(stream.native_handle(), "localhost");
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  beast::get_lowest_layer(stream).connect(
      asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)),
      ec);
  if (!ec) stream.handshake(asio::ssl::stream_base::client, ec);
  if (ec) return -1;
  http::request<http::empty_body> req{http::verb::get, "/v1/models", 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::authorization, "Bearer key-a");
  http::write(stream, req, ec);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  if (!ec) http::read(stream, buf, res, ec);
  if (ec) return -1;
  return res.result_int();
}

std::shared_ptr<grpc::Channel> TlsChannel(int port, const std::string& root_ca,
                                          const ClientCert& client = {},
                                          const std::string& target_name_override = "") {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Slurp(root_ca);
  if (!client.cert.empty()) {
    ssl.pem_cert_chain = Slurp(client.cert);
    ssl.pem_private_key = Slurp(client.key);
  }
  grpc::ChannelArguments args;
  if (!target_name_override.empty()) args.SetSslTargetNameOverride(target_name_override);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::SslCredentials(ssl),
                                   args);
}

std::shared_ptr<grpc::Channel> InsecureChannel(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureChannelCredentials());
}

// One short greedy Generate (stream) with a valid API key and a deadline.
grpc::Status Generate(const std::shared_ptr<grpc::Channel>& channel, std::string* text = nullptr) {
  auto stub = v1::Inference::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer key-a");
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = stub->Generate(&ctx, GreedyPrompt("Hello", 3));
  v1::GenerateResponse resp;
  int tokens = 0;
  while (reader->Read(&resp)) {
    for (const auto& s : resp.samples()) {
      tokens += s.token_ids_size();
      if (text) *text += s.text();
    }
  }
  grpc::Status st = reader->Finish();
  if (st.ok() && tokens != 3) return grpc::Status(grpc::StatusCode::INTERNAL, "expected 3 tokens");
  return st;
}

// Server fixture per TLS mode; one server per test suite (ctest runs each test in its own process).
template <bool kMutual>
class TlsServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const Pki& pki = Pki::Get();
    ASSERT_TRUE(pki.error.empty()) << pki.error;
    ServerOptions o = BaseOptions();
    o.tls_cert = pki.server_cert;
    o.tls_key = pki.server_key;
    if (kMutual) o.tls_client_ca = pki.ca;
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(Pki::Get().error.empty());
  }
  static int port() { return server_->port(); }
  static const Pki& pki() { return Pki::Get(); }

  static inline Server* server_ = nullptr;
};

using TlsTest = TlsServerTest<false>;
using MtlsTest = TlsServerTest<true>;

// ---------------------------------------------------------------------------------------------
// TLS (server certificate only). Few, broad test cases: ctest runs each in its own process, which
// pays for libtorch loading and a server start.

TEST_F(TlsTest, ClientTrustingTheCaSucceeds) {
  std::string text;
  grpc::Status st = Generate(TlsChannel(port(), pki().ca), &text);
  EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_FALSE(text.empty());

  auto health = grpc::health::v1::Health::NewStub(TlsChannel(port(), pki().ca));
  EXPECT_EQ(HealthStatus(*health), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(HealthStatus(*health, "muse.v1.Inference"),
            grpc::health::v1::HealthCheckResponse::SERVING);

  // The certificate's other SAN, DNS:localhost, verifies too.
  st = Generate(TlsChannel(port(), pki().ca, {}, "localhost"));
  EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
}

TEST_F(TlsTest, HttpApiServesHttpsWithTheSameCertificate) {
  const int http_port = server_->http_port();
  ASSERT_GT(http_port, 0);
  EXPECT_EQ(HttpsModels(http_port, pki().ca), 200);
  EXPECT_EQ(HttpsModels(http_port, pki().other_ca), -1) << "server certificate must not verify";
}

TEST_F(MtlsTest, HttpApiRequiresAClientCertificate) {
  const int http_port = server_->http_port();
  EXPECT_EQ(HttpsModels(http_port, pki().ca, {pki().client_cert, pki().client_key}), 200);
  EXPECT_EQ(HttpsModels(http_port, pki().ca), -1);
  EXPECT_EQ(HttpsModels(http_port, pki().ca, {pki().other_client_cert, pki().other_client_key}),
            -1);
}

TEST_F(TlsTest, UntrustedConnectionsAreRejected) {
  {
    SCOPED_TRACE("plaintext client");
    grpc::Status st = Generate(InsecureChannel(port()));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
  {
    SCOPED_TRACE("client trusting an unrelated CA");
    grpc::Status st = Generate(TlsChannel(port(), pki().other_ca));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
  {
    SCOPED_TRACE("server name not in the certificate");
    grpc::Status st = Generate(TlsChannel(port(), pki().ca, {}, "not-the-server.example"));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
}

// ---------------------------------------------------------------------------------------------
// mTLS (--tls-client-ca: a client certificate signed by that CA is required)

TEST_F(MtlsTest, ClientCertSignedByTheCaSucceeds) {
  std::string text;
  grpc::Status st =
      Generate(TlsChannel(port(), pki().ca, {pki().client_cert, pki().client_key}), &text);
  EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_FALSE(text.empty());
}

TEST_F(MtlsTest, OtherClientsAreRejected) {
  {
    SCOPED_TRACE("no client certificate");
    grpc::Status st = Generate(TlsChannel(port(), pki().ca));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
  {
    SCOPED_TRACE("client certificate from an unrelated CA");
    grpc::Status st =
        Generate(TlsChannel(port(), pki().ca, {pki().other_client_cert, pki().other_client_key}));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
  {
    SCOPED_TRACE("plaintext client");
    grpc::Status st = Generate(InsecureChannel(port()));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
}

// ---------------------------------------------------------------------------------------------
// Server reflection (grpc.reflection.v1alpha), over TLS. Debian's libgrpc++-dev ships
// libgrpc++_reflection but not the generated reflection headers; the library registers
// reflection.proto in the generated descriptor pool, so the messages are built dynamically and
// the bidi stream is driven with ClientReaderWriter<Message, Message> (what generated stubs use).

class ReflectionClient {
 public:
  explicit ReflectionClient(std::shared_ptr<grpc::Channel> channel) : channel_(std::move(channel)) {
    const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
    request_type_ = pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionRequest");
    response_type_ =
        pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionResponse");
  }
  bool ok() const { return request_type_ && response_type_; }

  // One request on a fresh stream: sets string field `field` (list_services,
  // file_containing_symbol, ...) to `value`.
  std::unique_ptr<pb::Message> Ask(const std::string& field, const std::string& value,
                                   grpc::Status* status) {
    std::unique_ptr<pb::Message> req(
        pb::MessageFactory::generated_factory()->GetPrototype(request_type_)->New());
    const pb::FieldDescriptor* fd = request_type_->FindFieldByName(field);
    EXPECT_NE(fd, nullptr) << field;
    if (!fd) return nullptr;
    req->GetReflection()->SetString(req.get(), fd, value);
    std::unique_ptr<pb::Message> resp(
        pb::MessageFactory::generated_factory()->GetPrototype(response_type_)->New());

    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const grpc::internal::RpcMethod method(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        grpc::internal::RpcMethod::BIDI_STREAMING, channel_);
    std::unique_ptr<grpc::ClientReaderWriter<pb::Message, pb::Message>> stream(
        grpc::internal::ClientReaderWriterFactory<pb::Message, pb::Message>::Create(channel_.get(),
                                                                                    method, &ctx));
    bool got = stream->Write(*req) && stream->WritesDone() && stream->Read(resp.get());
    pb::Message* drain = resp->New();
    while (stream->Read(drain)) {
    }
    delete drain;
    *status = stream->Finish();
    if (status->ok() && !got)
      *status = grpc::Status(grpc::StatusCode::INTERNAL, "no reflection response");
    return resp;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  const pb::Descriptor* request_type_ = nullptr;
  const pb::Descriptor* response_type_ = nullptr;
};

const pb::Message& SubMessage(const pb::Message& m, const std::string& field) {
  const pb::FieldDescriptor* fd = m.GetDescriptor()->FindFieldByName(field);
  EXPECT_NE(fd, nullptr) << field;
  return m.GetReflection()->GetMessage(m, fd);
}

bool Has(const pb::Message& m, const std::string& field) {
  const pb::FieldDescriptor* fd = m.GetDescriptor()->FindFieldByName(field);
  return fd && m.GetReflection()->HasField(m, fd);
}

TEST_F(TlsTest, ReflectionListsServices) {
  ReflectionClient client(TlsChannel(port(), pki().ca));
  ASSERT_TRUE(client.ok()) << "grpc.reflection.v1alpha not in the generated descriptor pool";
  grpc::Status st;
  auto resp = client.Ask("list_services", "", &st);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  ASSERT_TRUE(Has(*resp, "list_services_response")) << resp->DebugString();
  const pb::Message& list = SubMessage(*resp, "list_services_response");
  const pb::FieldDescriptor* service_fd = list.GetDescriptor()->FindFieldByName("service");
  ASSERT_NE(service_fd, nullptr);
  std::set<std::string> names;
  for (int i = 0; i < list.GetReflection()->FieldSize(list, service_fd); ++i) {
    const pb::Message& s = list.GetReflection()->GetRepeatedMessage(list, service_fd, i);
    names.insert(s.GetReflection()->GetString(s, s.GetDescriptor()->FindFieldByName("name")));
  }
  EXPECT_TRUE(names.count("muse.v1.Inference")) << resp->DebugString();
  EXPECT_TRUE(names.count("grpc.health.v1.Health")) << resp->DebugString();
  EXPECT_TRUE(names.count("grpc.reflection.v1alpha.ServerReflection")) << resp->DebugString();
}

// file_containing_symbol returns inference.proto and its dependencies: enough for a client such as
// grpcurl to rebuild the service and its messages.
TEST_F(TlsTest, ReflectionDescribesInference) {
  ReflectionClient client(TlsChannel(port(), pki().ca));
  ASSERT_TRUE(client.ok());
  grpc::Status st;
  auto resp = client.Ask("file_containing_symbol", "muse.v1.Inference", &st);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  ASSERT_TRUE(Has(*resp, "file_descriptor_response")) << resp->DebugString();
  const pb::Message& files = SubMessage(*resp, "file_descriptor_response");
  const pb::FieldDescriptor* fdp_fd =
      files.GetDescriptor()->FindFieldByName("file_descriptor_proto");
  ASSERT_NE(fdp_fd, nullptr);
  const int n = files.GetReflection()->FieldSize(files, fdp_fd);
  ASSERT_GE(n, 1);

  pb::SimpleDescriptorDatabase db;
  std::set<std::string> names;
  for (int i = 0; i < n; ++i) {
    pb::FileDescriptorProto fdp;
    ASSERT_TRUE(fdp.ParseFromString(files.GetReflection()->GetRepeatedString(files, fdp_fd, i)));
    names.insert(fdp.name());
    db.Add(fdp);
  }
  EXPECT_TRUE(names.count("muse/v1/inference.proto"));
  pb::DescriptorPool pool(&db);
  const pb::ServiceDescriptor* svc = pool.FindServiceByName("muse.v1.Inference");
  ASSERT_NE(svc, nullptr);
  const pb::MethodDescriptor* gen = svc->FindMethodByName("Generate");
  ASSERT_NE(gen, nullptr);
  EXPECT_TRUE(gen->server_streaming());
  EXPECT_EQ(gen->input_type()->full_name(), "muse.v1.GenerateRequest");
  EXPECT_NE(gen->input_type()->FindFieldByName("prompt"), nullptr);

  // An unknown symbol: error_response NOT_FOUND on an OK stream.
  resp = client.Ask("file_containing_symbol", "muse.v1.NoSuchService", &st);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  ASSERT_TRUE(Has(*resp, "error_response")) << resp->DebugString();
  const pb::Message& err = SubMessage(*resp, "error_response");
  EXPECT_EQ(err.GetReflection()->GetInt32(err, err.GetDescriptor()->FindFieldByName("error_code")),
            static_cast<int>(grpc::StatusCode::NOT_FOUND));
}

// ---------------------------------------------------------------------------------------------
// Option validation (fails before the model is loaded; no server runs).

TEST(TlsOptionsTest, InvalidCombinationsAndFilesAreRejected) {
  const Pki& pki = Pki::Get();
  ASSERT_TRUE(pki.error.empty()) << pki.error;
  auto BaseOptions = [&] {  // TLS options are checked before the model directory is read
    ServerOptions o;
    o.model_dir = pki.dir + "/no-model";
    o.host = "127.0.0.1";
    o.port = 0;
    o.no_auth = true;
    return o;
  };
  {
    ServerOptions o = BaseOptions();
    o.tls_cert = pki.server_cert;  // no key
    auto s = Server::Start(o);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find("--tls-key"), std::string::npos) << s.status();
  }
  {
    ServerOptions o = BaseOptions();
    o.tls_client_ca = pki.ca;  // mTLS without a server certificate
    auto s = Server::Start(o);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find("--tls-client-ca"), std::string::npos) << s.status();
  }
  {
    ServerOptions o = BaseOptions();
    o.tls_cert = pki.dir + "/missing.pem";
    o.tls_key = pki.server_key;
    auto s = Server::Start(o);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("--tls-cert"), std::string::npos) << s.status();
  }
  {
    ServerOptions o = BaseOptions();
    o.tls_cert = pki.server_cert;
    o.tls_key = pki.server_key;
    o.tls_client_ca = pki.dir + "/missing-ca.pem";
    auto s = Server::Start(o);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("--tls-client-ca"), std::string::npos) << s.status();
  }
}

}  // namespace
}  // namespace muse::server
