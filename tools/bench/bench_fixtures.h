// What the benchmarks over the whole back end share: the cluster kubesim serves (namespace
// bench, pod app-1, container main) and a policy allowing `echo` to group bench.
#pragma once

namespace podgate::bench {

constexpr char kBenchCluster[] = R"(namespaces:
  - name: bench
pods:
  - name: app-1
    namespace: bench
    containers:
      - name: main
        image: bench/app:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

constexpr char kBenchEchoPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 30s, outputLimitBytes: 1048576}
rules:
  - id: bench-echo
    effect: allow
    subjects: {groups: [bench]}
    targets: {namespaces: [bench]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z0-9]+", optional: true, repeat: true}
)";

}  // namespace podgate::bench
