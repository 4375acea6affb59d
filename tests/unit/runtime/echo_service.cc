#include "echo_service.h"

namespace podgate::testing {
namespace {

class EchoReactor final : public grpc::ServerBidiReactor<v1::EchoRequest, v1::EchoResponse> {
 public:
  explicit EchoReactor(EchoServiceImpl* service) : service_(service) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    response_.set_text(request_.text());
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
      return;
    }
    StartRead(&request_);
  }

  void OnCancel() override { service_->cancelled++; }

  void OnDone() override {
    service_->finished++;
    delete this;
  }

 private:
  EchoServiceImpl* service_;
  v1::EchoRequest request_;
  v1::EchoResponse response_;
};

}  // namespace

grpc::ServerBidiReactor<v1::EchoRequest, v1::EchoResponse>* EchoServiceImpl::Echo(
    grpc::CallbackServerContext* /*context*/) {
  return new EchoReactor(this);
}

}  // namespace podgate::testing
