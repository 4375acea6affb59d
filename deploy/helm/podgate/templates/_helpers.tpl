{{/*
Names, labels and shared fragments. Component helpers take a dict:
  (dict "root" $ "component" "exec")
*/}}

{{- define "podgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "podgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "podgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* (list base suffix) -> base-suffix, the base cut so that the result fits 63 characters. */}}
{{- define "podgate.suffixed" -}}
{{- $base := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- printf "%s-%s" ($base | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{/* <fullname>-<component>, e.g. podgate-exec. */}}
{{- define "podgate.componentFullname" -}}
{{- include "podgate.suffixed" (list (include "podgate.fullname" .root) .component) -}}
{{- end -}}

{{- define "podgate.edge.fullname" -}}{{ include "podgate.componentFullname" (dict "root" . "component" "edge") }}{{- end -}}
{{- define "podgate.exec.fullname" -}}{{ include "podgate.componentFullname" (dict "root" . "component" "exec") }}{{- end -}}
{{- define "podgate.policy.fullname" -}}{{ include "podgate.componentFullname" (dict "root" . "component" "policy") }}{{- end -}}
{{- define "podgate.audit.fullname" -}}{{ include "podgate.componentFullname" (dict "root" . "component" "audit") }}{{- end -}}

{{/* The headless Service clients resolve to every replica (gRPC round-robin). */}}
{{- define "podgate.headlessName" -}}
{{- include "podgate.suffixed" (list (include "podgate.componentFullname" .) "headless") -}}
{{- end -}}

{{- define "podgate.labels" -}}
helm.sh/chart: {{ include "podgate.chart" . }}
app.kubernetes.io/name: {{ include "podgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: podgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "podgate.componentLabels" -}}
{{ include "podgate.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "podgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "podgate.serviceAccountName" -}}
{{- $v := index .root.Values .component -}}
{{- if $v.serviceAccount.create -}}
{{- default (include "podgate.componentFullname" .) $v.serviceAccount.name -}}
{{- else -}}
{{- default "default" $v.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "podgate.image" -}}
{{- $img := .Values.image -}}
{{- $repo := $img.repository -}}
{{- if $img.registry -}}{{- $repo = printf "%s/%s" $img.registry $img.repository -}}{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Fully qualified name of a component's headless Service. */}}
{{- define "podgate.serviceFqdn" -}}
{{- printf "%s.%s.svc.%s" (include "podgate.headlessName" .) .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* gRPC target of a component, e.g. dns:///podgate-policy-headless.ns.svc.cluster.local:7101 */}}
{{- define "podgate.grpcTarget" -}}
{{- $v := index .root.Values .component -}}
{{- printf "dns:///%s:%v" (include "podgate.serviceFqdn" .) $v.grpcPort -}}
{{- end -}}

{{/* Replicas a component runs when autoscaling is off (audit with SQLite: always 1). */}}
{{- define "podgate.replicas" -}}
{{- $v := index .root.Values .component -}}
{{- if and (eq .component "audit") (ne .root.Values.audit.store.type "postgresql") -}}
1
{{- else -}}
{{- $v.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* Whether a component has an HPA ("true" or ""). Audit on SQLite never scales. */}}
{{- define "podgate.hpaEnabled" -}}
{{- $v := index .root.Values .component -}}
{{- if and $v.autoscaling.enabled (or (ne .component "audit") (eq .root.Values.audit.store.type "postgresql")) -}}
true
{{- end -}}
{{- end -}}

{{/* The least number of replicas a component may run (HPA minimum or fixed replicas). */}}
{{- define "podgate.minReplicas" -}}
{{- $v := index .root.Values .component -}}
{{- if include "podgate.hpaEnabled" . -}}
{{- $v.autoscaling.minReplicas -}}
{{- else -}}
{{- include "podgate.replicas" . -}}
{{- end -}}
{{- end -}}

{{/* Origins edge accepts: the configured list, else https://<host> per Ingress host. */}}
{{- define "podgate.edge.allowedOrigins" -}}
{{- $origins := default (list) .Values.edge.allowedOrigins -}}
{{- if not $origins -}}
{{- range .Values.edge.ingress.hosts -}}
{{- $origins = append $origins (printf "https://%s" .) -}}
{{- end -}}
{{- end -}}
{{- join "," $origins -}}
{{- end -}}

{{/* Name of the Secret holding the JWT verification keys. */}}
{{- define "podgate.jwtSecretName" -}}
{{- default (include "podgate.suffixed" (list (include "podgate.fullname" .) "jwt")) .Values.jwt.existingSecret -}}
{{- end -}}

{{- define "podgate.policyConfigMapName" -}}
{{- default (include "podgate.suffixed" (list (include "podgate.policy.fullname" .) "document")) .Values.policy.existingConfigMap -}}
{{- end -}}

{{- define "podgate.auditDsnSecretName" -}}
{{- default (include "podgate.suffixed" (list (include "podgate.audit.fullname" .) "store")) .Values.audit.postgresql.existingSecret -}}
{{- end -}}

{{/* A component's TLS Secret: tls.existingSecrets.<component>, else the chart's own. */}}
{{- define "podgate.tlsSecretName" -}}
{{- $existing := index (default (dict) .root.Values.tls.existingSecrets) .component -}}
{{- if $existing -}}
{{- $existing -}}
{{- else -}}
{{- include "podgate.suffixed" (list (include "podgate.componentFullname" .) "tls") -}}
{{- end -}}
{{- end -}}

{{/* "true" when the four services' TLS Secrets are given (tls.existingSecrets), "" else. */}}
{{- define "podgate.tlsExisting" -}}
{{- $e := default (dict) .Values.tls.existingSecrets -}}
{{- $n := 0 -}}
{{- range $c := list "edge" "exec" "policy" "audit" }}{{ if index $e $c }}{{ $n = add1 $n }}{{ end }}{{ end -}}
{{- if and (gt $n 0) (lt $n 4) -}}
{{- fail "tls.existingSecrets: set all four (edge, exec, policy, audit) or none: the services must share one CA" -}}
{{- end -}}
{{- if eq $n 4 }}true{{ end -}}
{{- end -}}

{{/* Checks that run once per render; a bad combination stops the install with one clear line. */}}
{{- define "podgate.validate" -}}
{{- if not .Values.jwt.issuer -}}
{{- fail "jwt.issuer is required: the `iss` every token must carry (e.g. your OIDC issuer URL)" -}}
{{- end -}}
{{- if not .Values.jwt.audience -}}
{{- fail "jwt.audience is required: the `aud` every token must carry" -}}
{{- end -}}
{{- if not (or .Values.jwt.jwksUrl .Values.jwt.jwks .Values.jwt.publicKey .Values.jwt.existingSecret) -}}
{{- fail "JWT keys are required: set jwt.jwksUrl (your provider's jwks_uri), jwt.jwks (--set-file jwt.jwks=jwks.json), jwt.publicKey or jwt.existingSecret" -}}
{{- end -}}
{{- if and .Values.jwt.jwksUrl (or .Values.jwt.jwks .Values.jwt.publicKey .Values.jwt.existingSecret) -}}
{{- fail "jwt.jwksUrl excludes jwt.jwks, jwt.publicKey and jwt.existingSecret: one source of keys" -}}
{{- end -}}
{{- if and .Values.jwt.jwks .Values.jwt.publicKey -}}
{{- fail "set only one of jwt.jwks and jwt.publicKey" -}}
{{- end -}}
{{- if not (include "podgate.edge.allowedOrigins" .) -}}
{{- fail "edge.allowedOrigins is empty and no edge.ingress.hosts are set: list the exact Origins (https://host) of the terminal page" -}}
{{- end -}}
{{- if and (not .Values.edge.behindTlsProxy) (not .Values.edge.httpTls.secretName) -}}
{{- fail "edge.behindTlsProxy is false: set edge.httpTls.secretName so edge serves HTTPS itself" -}}
{{- end -}}
{{- if and .Values.edge.authProxy.enabled (not .Values.edge.authProxy.cidrs) (not .Values.edge.authProxy.clientNames) -}}
{{- fail "edge.authProxy.enabled needs edge.authProxy.cidrs and/or edge.authProxy.clientNames: the auth proxy's addresses or the names on its client certificate" -}}
{{- end -}}
{{- if and .Values.edge.authProxy.clientNames .Values.edge.behindTlsProxy -}}
{{- fail "edge.authProxy.clientNames needs edge.behindTlsProxy=false: the proxy's client certificate is verified by edge's own TLS (the ca.crt of edge.httpTls.secretName)" -}}
{{- end -}}
{{- if eq .Values.audit.store.type "postgresql" -}}
{{- if not (or .Values.audit.postgresql.dsn .Values.audit.postgresql.existingSecret) -}}
{{- fail "audit.store.type=postgresql needs audit.postgresql.dsn or audit.postgresql.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.exec.rbac.clusterWide .Values.exec.rbac.namespaces -}}
{{- fail "exec.rbac.clusterWide and exec.rbac.namespaces exclude each other" -}}
{{- end -}}
{{- if and .Values.edge.ingress.enabled (not .Values.edge.ingress.hosts) -}}
{{- fail "edge.ingress.enabled needs at least one host in edge.ingress.hosts" -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.enabled) -}}
{{- fail "tls.certManager.enabled needs tls.enabled" -}}
{{- end -}}
{{- if and (include "podgate.tlsExisting" .) .Values.tls.certManager.enabled -}}
{{- fail "tls.existingSecrets and tls.certManager.enabled exclude each other: one source of certificates" -}}
{{- end -}}
{{- if and (include "podgate.tlsExisting" .) .Values.tls.ca.existingSecret -}}
{{- fail "tls.existingSecrets and tls.ca.existingSecret exclude each other: the chart signs nothing when the certificates are given" -}}
{{- end -}}
{{- if and .Values.tls.ca.existingSecret .Values.tls.certManager.enabled -}}
{{- fail "tls.ca.existingSecret is for the chart's own certificates: with cert-manager, make a CA Issuer from that Secret and set tls.certManager.issuerRef" -}}
{{- end -}}
{{- if .Values.oidc.enabled -}}
{{- if not .Values.oidc.clientId -}}
{{- fail "oidc.enabled needs oidc.clientId (edge's client id at the provider)" -}}
{{- end -}}
{{- if not .Values.oidc.existingSecret -}}
{{- fail "oidc.enabled needs oidc.existingSecret: a Secret with cookie-key (and client-secret unless oidc.publicClient)" -}}
{{- end -}}
{{- if not .Values.jwt.jwksUrl -}}
{{- fail "oidc.enabled needs jwt.jwksUrl (the provider's jwks_uri) and jwt.issuer set to the provider's issuer" -}}
{{- end -}}
{{- if not (has .Values.oidc.clientId (splitList "," .Values.jwt.audience)) -}}
{{- fail "oidc.enabled: jwt.audience must include oidc.clientId (an ID token's audience is the client id)" -}}
{{- end -}}
{{- if not (include "podgate.oidc.redirectUrl" .) -}}
{{- fail "oidc.enabled needs oidc.redirectUrl (https://<host>/auth/callback) or an edge.ingress.hosts entry" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Egress to the identity provider's JWKS URL (edge and exec, only with jwt.jwksUrl). */}}
{{- define "podgate.egressIdentityProvider" -}}
{{- if .Values.jwt.jwksUrl }}
{{- $idp := .Values.networkPolicy.identityProvider }}
# The identity provider (jwt.jwksUrl).
- ports:
    {{- range $idp.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $idp.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* metadata.annotations of a resource: commonAnnotations merged with the resource's own
(`extra`, which wins). Renders nothing when both are empty. (dict "root" $ "extra" map) */}}
{{- define "podgate.annotations" -}}
{{- $all := merge (deepCopy (default (dict) .extra)) (default (dict) .root.Values.commonAnnotations) -}}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
