{{/*
Per-component resources with the same shape for every service; each component's file
(`<component>-hpa.yaml`, ...) includes the one it needs.
*/}}

{{- define "podgate.deployment" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "podgate.componentFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "podgate.componentLabels" . | nindent 4 }}
  {{- with (include "podgate.annotations" (dict "root" $root "extra" (dict)) | trim) }}{{ . | nindent 2 }}{{ end }}
spec:
  {{- if not (include "podgate.hpaEnabled" .) }}
  replicas: {{ include "podgate.replicas" . }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- if $v.updateStrategy }}
    {{- toYaml $v.updateStrategy | nindent 4 }}
    {{- else }}
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
    {{- end }}
  selector:
    matchLabels:
      {{- include "podgate.selectorLabels" . | nindent 6 }}
  template:
    {{- include "podgate.podTemplate" . | nindent 4 }}
{{- end -}}

{{- define "podgate.serviceAccount" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
{{- if $v.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "podgate.serviceAccountName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "podgate.componentLabels" . | nindent 4 }}
  {{- with (include "podgate.annotations" (dict "root" $root "extra" $v.serviceAccount.annotations) | trim) }}{{ . | nindent 2 }}{{ end }}
automountServiceAccountToken: {{ eq .component "exec" }}
{{- end }}
{{- end -}}

{{/* Headless Service: clients resolve every replica and balance round-robin per call. */}}
{{- define "podgate.headlessService" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "podgate.headlessName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "podgate.componentLabels" . | nindent 4 }}
  {{- with (include "podgate.annotations" (dict "root" $root "extra" (dict)) | trim) }}{{ . | nindent 2 }}{{ end }}
spec:
  type: ClusterIP
  clusterIP: None
  selector:
    {{- include "podgate.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $v.grpcPort }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    - name: metrics
      port: {{ $v.metricsPort }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
{{- end -}}

{{- define "podgate.hpa" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
{{- if include "podgate.hpaEnabled" . }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "podgate.componentFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "podgate.componentLabels" . | nindent 4 }}
  {{- with (include "podgate.annotations" (dict "root" $root "extra" (dict)) | trim) }}{{ . | nindent 2 }}{{ end }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "podgate.componentFullname" . }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    {{- with $v.autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
    {{- with $v.autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
  {{- with $v.autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* PodDisruptionBudget, only when more than one replica can run (else it blocks drains). */}}
{{- define "podgate.pdb" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
{{- if and $v.pdb.enabled (gt (include "podgate.minReplicas" . | int) 1) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "podgate.componentFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "podgate.componentLabels" . | nindent 4 }}
  {{- with (include "podgate.annotations" (dict "root" $root "extra" (dict)) | trim) }}{{ . | nindent 2 }}{{ end }}
spec:
  {{- if and (not (kindIs "invalid" $v.pdb.minAvailable)) (not (kindIs "invalid" $v.pdb.maxUnavailable)) }}
  {{- fail (printf "%s.pdb: set minAvailable or maxUnavailable, not both (minAvailable: null to use maxUnavailable)" .component) }}
  {{- end }}
  {{- if not (kindIs "invalid" $v.pdb.maxUnavailable) }}
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  {{- else }}
  minAvailable: {{ if kindIs "invalid" $v.pdb.minAvailable }}1{{ else }}{{ $v.pdb.minAvailable }}{{ end }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "podgate.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "podgate.serviceMonitor" -}}
{{- $root := .root -}}
{{- if $root.Values.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "podgate.componentFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "podgate.componentLabels" . | nindent 4 }}
    {{- with $root.Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with (include "podgate.annotations" (dict "root" $root "extra" (dict)) | trim) }}{{ . | nindent 2 }}{{ end }}
spec:
  selector:
    matchLabels:
      {{- include "podgate.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ $root.Release.Namespace }}
  endpoints:
    - port: metrics
      path: /metrics
      scheme: http
      interval: {{ $root.Values.serviceMonitor.interval }}
      scrapeTimeout: {{ $root.Values.serviceMonitor.scrapeTimeout }}
      {{- with $root.Values.serviceMonitor.relabelings }}
      relabelings:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.serviceMonitor.metricRelabelings }}
      metricRelabelings:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy peer selecting a podgate component's pods. */}}
{{- define "podgate.peer" -}}
- podSelector:
    matchLabels:
      {{- include "podgate.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Egress rule to a podgate component's gRPC port. */}}
{{- define "podgate.egressTo" -}}
{{- $v := index .root.Values .component -}}
- to:
    {{- include "podgate.peer" . | nindent 4 }}
  ports:
    - port: {{ $v.grpcPort }}
      protocol: TCP
{{- end -}}

{{- define "podgate.egressDns" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}

{{/* Ingress rule: metrics port from the configured scrapers (networkPolicy.metrics.from:
a peer list, "any" for every source, nothing when empty), then the service's extraIngress. */}}
{{- define "podgate.ingressMetrics" -}}
{{- $v := index .root.Values .component -}}
{{- $from := .root.Values.networkPolicy.metrics.from -}}
{{- if eq (toString $from) "any" }}
# Metrics from any source (networkPolicy.metrics.from: any).
- ports:
    - port: {{ $v.metricsPort }}
      protocol: TCP
{{- else if $from }}
- from:
    {{- toYaml $from | nindent 4 }}
  ports:
    - port: {{ $v.metricsPort }}
      protocol: TCP
{{- end }}
{{- with $v.networkPolicy.extraIngress }}
# <service>.networkPolicy.extraIngress
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}

{{/* The service's extra egress rules (<service>.networkPolicy.extraEgress). */}}
{{- define "podgate.extraEgress" -}}
{{- $v := index .root.Values .component -}}
{{- with $v.networkPolicy.extraEgress }}
# <service>.networkPolicy.extraEgress
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}

{{/* Ingress rule: gRPC port from the given podgate components plus extra peers. */}}
{{- define "podgate.ingressGrpc" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
- from:
    {{- range .clients }}
    {{- include "podgate.peer" (dict "root" $root "component" .) | nindent 4 }}
    {{- end }}
    {{- if $root.Values.tests.enabled }}
    # The `helm test` Pod (templates/tests/test-health.yaml).
    {{- include "podgate.peer" (dict "root" $root "component" "helm-test") | nindent 4 }}
    {{- end }}
    {{- with .extra }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - port: {{ $v.grpcPort }}
      protocol: TCP
{{- end -}}

{{- define "podgate.networkPolicyHeader" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "podgate.componentFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "podgate.componentLabels" . | nindent 4 }}
  {{- with (include "podgate.annotations" (dict "root" .root "extra" (dict)) | trim) }}{{ . | nindent 2 }}{{ end }}
spec:
  podSelector:
    matchLabels:
      {{- include "podgate.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
{{- end -}}
