{{/*
The pod template every component shares: one container running /usr/bin/podgate-<component>,
non-root, read-only root filesystem, a memory-backed /tmp, probes, the TLS Secret, and the
component's own mounts (policy document, JWT keys, audit data).
*/}}

{{/*
The command of an exec probe: podgate-probe asks the service's own gRPC port for
grpc.health.v1 over mutual TLS. (dict "root" $ "component" c "service" name "timeout" seconds)

Client certificate: the pod's own (tls.crt/tls.key of its TLS Secret, the files it serves with
and calls its peers with). The servers verify client certificates against the CA only
(--tls_client_ca; no allow-list of client names), and every certificate the chart makes or asks
cert-manager for carries both serverAuth and clientAuth, so the server accepts it. The probe
dials 127.0.0.1, so --server_name names the service's headless DNS name, which is in the
certificate.
*/}}
{{- define "podgate.probeCommand" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
{{- $dir := include "podgate.tlsDir" $root -}}
- /usr/bin/podgate-probe
- --address=127.0.0.1:{{ $v.grpcPort }}
- --service={{ .service }}
- --ca={{ $dir }}/ca.crt
- --cert={{ $dir }}/tls.crt
- --key={{ $dir }}/tls.key
- --server_name={{ include "podgate.headlessName" . }}
- --timeout={{ .timeout }}s
{{- end -}}

{{/* One probe's check: exec podgate-probe (TLS) or the kubelet's gRPC probe (plaintext).
(dict "root" $ "component" c "service" name "timeout" seconds) */}}
{{- define "podgate.grpcProbe" -}}
{{- $v := index .root.Values .component -}}
{{- if .root.Values.tls.enabled }}
exec:
  command:
    {{- include "podgate.probeCommand" . | nindent 4 }}
{{- else }}
grpc:
  port: {{ $v.grpcPort }}
  {{- with .service }}
  service: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
Probes. Liveness and startup: grpc.health.v1 for the overall service "" (the process is up and
serving; NOT_SERVING only once it drains). Readiness: the component's own health name
("policy", "audit": audit turns it NOT_SERVING while its store fails), so a replica that cannot
work leaves the Service. edge's readiness is GET /readyz on its HTTP port (200 once exec and
policy are reachable): plain HTTP behind a TLS proxy, HTTPS when edge terminates TLS itself
(the kubelet does not verify the certificate; the check is of edge's own answer on loopback).
*/}}
{{- define "podgate.probes" -}}
{{- $root := .root -}}
{{- $c := .component -}}
{{- $v := index $root.Values $c -}}
{{- $p := $root.Values.probes }}
startupProbe:
  {{- include "podgate.grpcProbe" (dict "root" $root "component" $c "service" "" "timeout" $p.startup.timeoutSeconds) | nindent 2 }}
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
livenessProbe:
  {{- include "podgate.grpcProbe" (dict "root" $root "component" $c "service" "" "timeout" $p.liveness.timeoutSeconds) | nindent 2 }}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
readinessProbe:
  {{- if eq $c "edge" }}
  httpGet:
    path: /readyz
    port: http
    scheme: {{ ternary "HTTP" "HTTPS" (and $v.behindTlsProxy true) }}
  {{- else }}
  {{- include "podgate.grpcProbe" (dict "root" $root "component" $c "service" $c "timeout" $p.readiness.timeoutSeconds) | nindent 2 }}
  {{- end }}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
{{- end -}}

{{- define "podgate.podTemplate" -}}
{{- $root := .root -}}
{{- $c := .component -}}
{{- $v := index $root.Values $c -}}
metadata:
  labels:
    {{- include "podgate.componentLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: {{ $c }}
    {{- if and (has $c (list "edge" "exec")) (not $root.Values.jwt.existingSecret) (not $root.Values.jwt.jwksUrl) }}
    # Keys are read at start-up: roll the pods when they change.
    checksum/jwt: {{ include (print $root.Template.BasePath "/jwt-secret.yaml") $root | sha256sum }}
    {{- end }}
    {{- if and $root.Values.tls.enabled (not $root.Values.tls.certManager.enabled) }}
    # Certificates are read at start-up: roll the pods when the chart makes new ones (after
    # their Secrets were deleted to rotate them). Stable while the Secret exists.
    checksum/tls: {{ (lookup "v1" "Secret" $root.Release.Namespace (include "podgate.tlsSecretName" .)).data | toJson | sha256sum }}
    {{- end }}
    {{- if and (eq $c "audit") $root.Values.audit.export.sinks }}
    # The export configuration is read at start-up: roll the pods when it changes.
    checksum/export: {{ include (print $root.Template.BasePath "/audit-export-configmap.yaml") $root | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "podgate.serviceAccountName" . }}
  # Only exec talks to the Kubernetes API; no other pod carries a token.
  automountServiceAccountToken: {{ eq $c "exec" }}
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ add (include "podgate.durationSeconds" $root.Values.drainTimeout | int) $root.Values.terminationGraceExtraSeconds }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $v.extraInitContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ $c }}
      image: {{ include "podgate.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: ["/usr/bin/podgate-{{ $c }}"]
      args:
        {{- include "podgate.args" . | nindent 8 }}
      env:
        {{- include "podgate.env" . | nindent 8 }}
      ports:
        - name: grpc
          containerPort: {{ $v.grpcPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $v.metricsPort }}
          protocol: TCP
        {{- if eq $c "edge" }}
        - name: http
          containerPort: {{ $v.httpPort }}
          protocol: TCP
        {{- end }}
      {{- include "podgate.probes" . | trim | nindent 6 }}
      {{- with $v.lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      {{- with $v.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if $root.Values.tls.enabled }}
        - name: tls
          mountPath: {{ include "podgate.tlsDir" $root }}
          readOnly: true
        {{- end }}
        {{- if and (has $c (list "edge" "exec")) (not $root.Values.jwt.jwksUrl) }}
        - name: jwt
          mountPath: {{ include "podgate.jwtDir" $root }}
          readOnly: true
        {{- end }}
        {{- if and (eq $c "edge") (not $v.behindTlsProxy) }}
        - name: http-tls
          mountPath: {{ include "podgate.httpTlsDir" $root }}
          readOnly: true
        {{- end }}
        {{- if and (eq $c "edge") $root.Values.oidc.enabled }}
        - name: oidc
          mountPath: {{ include "podgate.oidcDir" $root }}
          readOnly: true
        {{- end }}
        {{- if eq $c "policy" }}
        # A directory mount (no subPath): the kubelet swaps the ..data symlink on update and
        # policy hot-reloads the file.
        - name: policy
          mountPath: {{ include "podgate.policyDir" $root }}
          readOnly: true
        {{- end }}
        {{- if and (eq $c "audit") (ne $root.Values.audit.store.type "postgresql") }}
        - name: data
          mountPath: {{ include "podgate.auditDataDir" $root }}
        {{- end }}
        {{- if eq $c "audit" }}
        {{- include "podgate.auditExportMounts" $root | nindent 8 }}
        {{- end }}
        {{- if and (eq $c "exec") $v.clusters.kubeconfigSecret }}
        # The kubeconfigs of the other clusters exec serves (--kubeconfig_dir).
        - name: clusters
          mountPath: /etc/podgate/clusters
          readOnly: true
        {{- end }}
        {{- if and (eq $c "exec") $v.journal.enabled }}
        # The journal of running commands: an emptyDir outlives the container (kill -9, OOM).
        - name: journal
          mountPath: /var/lib/podgate-exec/journal
        {{- end }}
        {{- with $v.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- with $v.extraContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 64Mi
    {{- if $root.Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "podgate.tlsSecretName" . }}
        defaultMode: 0440
    {{- end }}
    {{- if and (has $c (list "edge" "exec")) (not $root.Values.jwt.jwksUrl) }}
    - name: jwt
      secret:
        secretName: {{ include "podgate.jwtSecretName" $root }}
        defaultMode: 0440
    {{- end }}
    {{- if and (eq $c "edge") (not $v.behindTlsProxy) }}
    - name: http-tls
      secret:
        secretName: {{ $v.httpTls.secretName }}
        defaultMode: 0440
    {{- end }}
    {{- if and (eq $c "edge") $root.Values.oidc.enabled }}
    # The client secret and the cookie key of single sign-on (read at start-up).
    - name: oidc
      secret:
        secretName: {{ $root.Values.oidc.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if and (eq $c "exec") $v.clusters.kubeconfigSecret }}
    - name: clusters
      secret:
        secretName: {{ $v.clusters.kubeconfigSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if and (eq $c "exec") $v.journal.enabled }}
    - name: journal
      emptyDir:
        sizeLimit: {{ $v.journal.sizeLimit }}
    {{- end }}
    {{- if eq $c "audit" }}
    {{- include "podgate.auditExportVolumes" $root | nindent 4 }}
    {{- end }}
    {{- if eq $c "policy" }}
    - name: policy
      configMap:
        name: {{ include "podgate.policyConfigMapName" $root }}
        items:
          - key: policy.yaml
            path: policy.yaml
    {{- end }}
    {{- with $v.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.affinity }}
  affinity:
    {{- toYaml $v.affinity | nindent 4 }}
  {{- else if ne $v.podAntiAffinity "none" }}
  # Two replicas of a service on one node would fall together: spread them over nodes
  # (<service>.podAntiAffinity; a non-empty <service>.affinity replaces this).
  affinity:
    podAntiAffinity:
      {{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "podgate.selectorLabels" . | fromYaml)) }}
      {{- if eq $v.podAntiAffinity "hard" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        - {{- toYaml $term | nindent 10 }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            {{- toYaml $term | nindent 12 }}
      {{- end }}
  {{- end }}
  {{- if $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- range $v.topologySpreadConstraints }}
    - {{- toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (include "podgate.selectorLabels" (dict "root" $root "component" $c) | fromYaml)))) | nindent 6 }}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Seconds of a duration like 10s, 2m, 1m30s, 500ms (rounded up). */}}
{{- define "podgate.durationSeconds" -}}
{{- $d := toString . -}}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $d) -}}
{{- fail (printf "drainTimeout %q is not a duration like 10s, 2m or 1m30s" $d) -}}
{{- end -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" $d -1 -}}
{{- $n := regexFind "^[0-9]+" . | int -}}
{{- $unit := regexFind "(ms|s|m|h)$" . -}}
{{- if eq $unit "ms" -}}{{- $total = add $total (div (add $n 999) 1000) -}}
{{- else if eq $unit "s" -}}{{- $total = add $total $n -}}
{{- else if eq $unit "m" -}}{{- $total = add $total (mul $n 60) -}}
{{- else -}}{{- $total = add $total (mul $n 3600) -}}{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* Audit's export and checkpoint mounts: the sinks' configuration, the Secrets they read, the
directory file sinks write to, and the checkpoint signing key. */}}
{{- define "podgate.auditFileSinks" -}}
{{- range .Values.audit.export.sinks }}{{ if .file }}yes{{ end }}{{ end -}}
{{- end -}}

{{- define "podgate.auditExportMounts" -}}
{{- $e := .Values.audit.export -}}
{{- if $e.sinks }}
- name: export-config
  mountPath: /etc/podgate/export/config
  readOnly: true
{{- end }}
{{- range $e.secretMounts }}
- name: export-secret-{{ . | sha256sum | trunc 10 }}
  mountPath: /etc/podgate/export/secrets/{{ . }}
  readOnly: true
{{- end }}
{{- if include "podgate.auditFileSinks" . }}
- name: export-files
  mountPath: /var/log/podgate
{{- end }}
{{- if .Values.audit.checkpoints.existingSecret }}
- name: checkpoint-key
  mountPath: /etc/podgate/checkpoint
  readOnly: true
{{- end }}
{{- end -}}

{{- define "podgate.auditExportVolumes" -}}
{{- $root := . -}}
{{- $e := .Values.audit.export -}}
{{- if $e.sinks }}
- name: export-config
  configMap:
    name: {{ include "podgate.fullname" $root }}-audit-export
{{- end }}
{{- range $e.secretMounts }}
- name: export-secret-{{ . | sha256sum | trunc 10 }}
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- if include "podgate.auditFileSinks" . }}
- name: export-files
  emptyDir:
    sizeLimit: {{ $e.fileVolumeSizeLimit }}
{{- end }}
{{- with .Values.audit.checkpoints.existingSecret }}
- name: checkpoint-key
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $root.Values.audit.checkpoints.secretKey }}
        path: key.pem
{{- end }}
{{- end -}}
