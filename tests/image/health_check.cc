// podgate-image-health PORT [SERVICE]: asks grpc.health.v1.Health/Check on 127.0.0.1:PORT
// (plaintext) and prints the answer. Exit 0 when SERVING, 1 otherwise. The image smoke test
// (tests/image/image_test.py) checks the services it runs from the image with it.
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "support/grpc_health.h"

int main(int argc, char** argv) {
  int port = 0;
  if (argc < 2 || argc > 3 || !absl::SimpleAtoi(argv[1], &port) || port <= 0 || port > 65535) {
    std::cerr << "usage: podgate-image-health PORT [SERVICE]\n";
    return 2;
  }
  const std::string service = argc == 3 ? argv[2] : "";
  auto status = podgate::testing::CheckHealth(podgate::testing::LocalChannel(port), service);
  if (!status.ok()) {
    std::cout << "error: " << status.status() << "\n";
    return 1;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*status) << "\n";
  return *status == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}
