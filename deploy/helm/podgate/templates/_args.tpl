{{/*
Command lines of the four binaries. Every flag name the chart uses is in "podgate.flagNames":
if a binary renames a flag, change it there only. Environment overrides are PODGATE_<FLAG>.
*/}}

{{- define "podgate.flagNames" -}}
grpcAddress: grpc_address
metricsAddress: metrics_address
tlsCert: tls_cert
tlsKey: tls_key
tlsClientCa: tls_client_ca
drainTimeout: drain_timeout
logLevel: log_level
policyFile: policy_file
store: store
chainId: chain_id
retention: retention
kubeconfig: kubeconfig
httpAddress: http_address
allowedOrigins: allowed_origins
webRoot: web_root
behindTlsProxy: behind_tls_proxy
maxConnectionsPerSource: max_connections_per_source
maxUnauthenticatedPerSource: max_unauthenticated_per_source
tlsCertHttp: tls_cert_http
tlsKeyHttp: tls_key_http
tlsClientCaHttp: tls_client_ca_http
trustedProxies: trusted_proxies
forwardedHeader: forwarded_header
authProxyUserHeader: auth_proxy_user_header
authProxyGroupsHeader: auth_proxy_groups_header
authProxyCidrs: auth_proxy_cidrs
authProxyClientNames: auth_proxy_client_names
jwtIssuer: jwt_issuer
jwtAudience: jwt_audience
jwtAlgorithm: jwt_algorithm
jwtJwksFile: jwt_jwks_file
jwtJwksUrl: jwt_jwks_url
jwtJwksRefreshMin: jwt_jwks_refresh_min
jwtJwksRefreshMax: jwt_jwks_refresh_max
jwtJwksMaxStale: jwt_jwks_max_stale
jwtKeyFile: jwt_key_file
jwtKeyId: jwt_key_id
jwtUserClaim: jwt_user_claim
jwtGroupsClaim: jwt_groups_claim
jwtUserPrefix: jwt_user_prefix
jwtGroupsPrefix: jwt_groups_prefix
jwtRequiredClaims: jwt_required_claims
jwtMaxGroups: jwt_max_groups
jwtLeeway: jwt_leeway
policyAddress: policy_address
auditAddress: audit_address
execAddress: exec_address
journalDir: journal_dir
resumeGrace: resume_grace
resumeBufferBytes: resume_buffer_bytes
observerBufferBytes: observer_buffer_bytes
oidcIssuer: oidc_issuer
oidcClientId: oidc_client_id
oidcClientSecretFile: oidc_client_secret_file
oidcCookieKeyFile: oidc_cookie_key_file
oidcScopes: oidc_scopes
oidcRedirectUrl: oidc_redirect_url
oidcProviderName: oidc_provider_name
oidcSessionLifetime: oidc_session_lifetime
journalMaxEntries: journal_max_entries
kubeImpersonation: kube_impersonation
kubeconfigDir: kubeconfig_dir
kubeInClusterName: kube_in_cluster_name
kubeDefaultCluster: kube_default_cluster
kubeHealthInterval: kube_health_interval
kubeSpareConnections: kube_spare_connections
kubeSpareIdle: kube_spare_idle
kubeImpersonateUserPrefix: kube_impersonate_user_prefix
kubeImpersonateGroupPrefix: kube_impersonate_group_prefix
kubeImpersonateSessionExtra: kube_impersonate_session_extra
kubeImpersonateUid: kube_impersonate_uid
exportConfig: export_config
checkpointKey: checkpoint_key
checkpointInterval: checkpoint_interval
checkpointState: checkpoint_state
# Client TLS flags of a peer: --<peer>_tls_ca, --<peer>_tls_cert, --<peer>_tls_key.
peerTlsCa: "%s_tls_ca"
peerTlsCert: "%s_tls_cert"
peerTlsKey: "%s_tls_key"
{{- end -}}

{{/* One flag name: (list $root "policyFile") -> policy_file. Unknown keys stop the render. */}}
{{- define "podgate.flag" -}}
{{- $names := include "podgate.flagNames" (index . 0) | fromYaml -}}
{{- $key := index . 1 -}}
{{- if not (hasKey $names $key) -}}
{{- fail (printf "internal: unknown flag key %s" $key) -}}
{{- end -}}
{{- $name := get $names $key -}}
{{- if gt (len .) 2 -}}{{- $name = printf $name (index . 2) -}}{{- end -}}
{{- $name -}}
{{- end -}}

{{/* One argument line: (list $root key value [peer]) -> - "--flag=value" */}}
{{- define "podgate.arg" -}}
{{- $root := index . 0 -}}
{{- if gt (len .) 3 -}}
- {{ printf "--%s=%v" (include "podgate.flag" (list $root (index . 1) (index . 3))) (index . 2) | quote }}
{{- else -}}
- {{ printf "--%s=%v" (include "podgate.flag" (list $root (index . 1))) (index . 2) | quote }}
{{- end -}}
{{- end -}}

{{/* The environment variable that overrides a flag: PODGATE_<FLAG>. */}}
{{- define "podgate.envName" -}}
{{- printf "PODGATE_%s" (include "podgate.flag" .) | upper -}}
{{- end -}}

{{- define "podgate.tlsDir" -}}/etc/podgate/tls{{- end -}}
{{- define "podgate.jwtDir" -}}/etc/podgate/jwt{{- end -}}
{{- define "podgate.policyDir" -}}/etc/podgate/policy{{- end -}}
{{- define "podgate.auditDataDir" -}}/var/lib/podgate{{- end -}}
{{- define "podgate.httpTlsDir" -}}/etc/podgate/http-tls{{- end -}}
{{- define "podgate.oidcDir" -}}/etc/podgate/oidc{{- end -}}

{{/* edge's public callback for single sign-on: oidc.redirectUrl, else the first Ingress host's. */}}
{{- define "podgate.oidc.redirectUrl" -}}
{{- if .Values.oidc.redirectUrl -}}
{{- .Values.oidc.redirectUrl -}}
{{- else if .Values.edge.ingress.hosts -}}
{{- printf "https://%s/auth/callback" (first .Values.edge.ingress.hosts) -}}
{{- end -}}
{{- end -}}

{{/* Client flags to reach a peer: address and, with TLS, CA plus client certificate. */}}
{{- define "podgate.peerArgs" -}}
{{- $root := .root -}}
{{- $peer := .peer -}}
{{ include "podgate.arg" (list $root (printf "%sAddress" $peer) (include "podgate.grpcTarget" (dict "root" $root "component" $peer))) }}
{{- if $root.Values.tls.enabled }}
{{ include "podgate.arg" (list $root "peerTlsCa" (printf "%s/ca.crt" (include "podgate.tlsDir" $root)) $peer) }}
{{ include "podgate.arg" (list $root "peerTlsCert" (printf "%s/tls.crt" (include "podgate.tlsDir" $root)) $peer) }}
{{ include "podgate.arg" (list $root "peerTlsKey" (printf "%s/tls.key" (include "podgate.tlsDir" $root)) $peer) }}
{{- end }}
{{- end -}}

{{/* The JWT verification flags of edge or exec: (dict "root" $ "component" "edge"|"exec"). */}}
{{- define "podgate.jwtArgs" -}}
{{- $root := .root -}}
{{- $audience := $root.Values.jwt.audience -}}
{{- /* exec also accepts the command line's ID tokens (podgate-run login), whose audience is the
       CLI's client id; edge, which never sees them, does not. */}}
{{- $cli := $root.Values.oidc.cliClientId -}}
{{- if and (eq .component "exec") $cli (not (has $cli (splitList "," $audience))) -}}
{{- $audience = printf "%s,%s" $audience $cli -}}
{{- end }}
{{ include "podgate.arg" (list $root "jwtIssuer" $root.Values.jwt.issuer) }}
{{ include "podgate.arg" (list $root "jwtAudience" $audience) }}
{{ include "podgate.arg" (list $root "jwtUserClaim" $root.Values.jwt.userClaim) }}
{{ include "podgate.arg" (list $root "jwtGroupsClaim" $root.Values.jwt.groupsClaim) }}
{{- with $root.Values.jwt.userPrefix }}
{{ include "podgate.arg" (list $root "jwtUserPrefix" .) }}
{{- end }}
{{- with $root.Values.jwt.groupsPrefix }}
{{ include "podgate.arg" (list $root "jwtGroupsPrefix" .) }}
{{- end }}
{{- with $root.Values.jwt.requiredClaims }}
{{- $pairs := list }}
{{- range $name, $value := . }}
{{- $pairs = append $pairs (printf "%s=%v" $name $value) }}
{{- end }}
{{ include "podgate.arg" (list $root "jwtRequiredClaims" (join "," $pairs)) }}
{{- end }}
{{ include "podgate.arg" (list $root "jwtMaxGroups" $root.Values.jwt.maxGroups) }}
{{ include "podgate.arg" (list $root "jwtLeeway" $root.Values.jwt.leeway) }}
{{- if $root.Values.jwt.jwksUrl }}
{{ include "podgate.arg" (list $root "jwtJwksUrl" $root.Values.jwt.jwksUrl) }}
{{ include "podgate.arg" (list $root "jwtJwksRefreshMin" $root.Values.jwt.jwksRefreshMin) }}
{{ include "podgate.arg" (list $root "jwtJwksRefreshMax" $root.Values.jwt.jwksRefreshMax) }}
{{ include "podgate.arg" (list $root "jwtJwksMaxStale" $root.Values.jwt.jwksMaxStale) }}
{{- else if $root.Values.jwt.publicKey }}
{{ include "podgate.arg" (list $root "jwtKeyFile" (printf "%s/public.pem" (include "podgate.jwtDir" $root))) }}
{{ include "podgate.arg" (list $root "jwtAlgorithm" $root.Values.jwt.algorithm) }}
{{- with $root.Values.jwt.keyId }}
{{ include "podgate.arg" (list $root "jwtKeyId" .) }}
{{- end }}
{{- else }}
{{ include "podgate.arg" (list $root "jwtJwksFile" (printf "%s/jwks.json" (include "podgate.jwtDir" $root))) }}
{{- end }}
{{- end -}}

{{/* Full argument list of a component's container. */}}
{{- define "podgate.args" -}}
{{- $root := .root -}}
{{- $c := .component -}}
{{- $v := index $root.Values $c -}}
{{ include "podgate.arg" (list $root "grpcAddress" (printf "[::]:%v" $v.grpcPort)) }}
{{ include "podgate.arg" (list $root "metricsAddress" (printf "[::]:%v" $v.metricsPort)) }}
{{ include "podgate.arg" (list $root "logLevel" $root.Values.logLevel) }}
{{ include "podgate.arg" (list $root "drainTimeout" $root.Values.drainTimeout) }}
{{- if $root.Values.tls.enabled }}
{{ include "podgate.arg" (list $root "tlsCert" (printf "%s/tls.crt" (include "podgate.tlsDir" $root))) }}
{{ include "podgate.arg" (list $root "tlsKey" (printf "%s/tls.key" (include "podgate.tlsDir" $root))) }}
{{ include "podgate.arg" (list $root "tlsClientCa" (printf "%s/ca.crt" (include "podgate.tlsDir" $root))) }}
{{- end }}
{{- if eq $c "policy" }}
{{ include "podgate.arg" (list $root "policyFile" (printf "%s/policy.yaml" (include "podgate.policyDir" $root))) }}
{{- else if eq $c "audit" }}
{{- with $root.Values.audit.retention }}
{{ include "podgate.arg" (list $root "retention" .) }}
{{- end }}
{{- if ne $root.Values.audit.store.type "postgresql" }}
{{ include "podgate.arg" (list $root "store" (printf "sqlite://%s/audit.db" (include "podgate.auditDataDir" $root))) }}
{{- end }}
{{- if $root.Values.audit.export.sinks }}
{{ include "podgate.arg" (list $root "exportConfig" "/etc/podgate/export/config/config.json") }}
{{- end }}
{{- if $root.Values.audit.checkpoints.existingSecret }}
{{ include "podgate.arg" (list $root "checkpointKey" "/etc/podgate/checkpoint/key.pem") }}
{{ include "podgate.arg" (list $root "checkpointInterval" $root.Values.audit.checkpoints.interval) }}
{{- /* The last signed head, beside the database (SQLite) or in the pod's /tmp (PostgreSQL:
each pod has its own chain, which ends with the pod). */}}
{{ include "podgate.arg" (list $root "checkpointState" (ternary "/tmp/audit-checkpoint.json" (printf "%s/checkpoint.json" (include "podgate.auditDataDir" $root)) (eq $root.Values.audit.store.type "postgresql"))) }}
{{- end }}
{{- else if eq $c "exec" }}
{{ include "podgate.peerArgs" (dict "root" $root "peer" "policy") }}
{{ include "podgate.peerArgs" (dict "root" $root "peer" "audit") }}
{{ include "podgate.jwtArgs" (dict "root" $root "component" "exec") }}
{{- if $v.journal.enabled }}
{{ include "podgate.arg" (list $root "journalDir" "/var/lib/podgate-exec/journal") }}
{{ include "podgate.arg" (list $root "journalMaxEntries" $v.journal.maxEntries) }}
{{- end }}
{{ include "podgate.arg" (list $root "resumeGrace" $v.resume.grace) }}
{{ include "podgate.arg" (list $root "resumeBufferBytes" $v.resume.bufferBytes) }}
{{ include "podgate.arg" (list $root "observerBufferBytes" $v.join.observerBufferBytes) }}
{{- with $v.clusters.kubeconfigSecret }}
{{ include "podgate.arg" (list $root "kubeconfigDir" "/etc/podgate/clusters") }}
{{- end }}
{{- if or $v.clusters.inCluster (not $v.clusters.kubeconfigSecret) }}
{{ include "podgate.arg" (list $root "kubeInClusterName" $v.clusters.inClusterName) }}
{{- end }}
{{- with $v.clusters.default }}
{{ include "podgate.arg" (list $root "kubeDefaultCluster" .) }}
{{- end }}
{{ include "podgate.arg" (list $root "kubeHealthInterval" $v.clusters.healthInterval) }}
{{ include "podgate.arg" (list $root "kubeSpareConnections" $v.clusters.spareConnections) }}
{{ include "podgate.arg" (list $root "kubeSpareIdle" $v.clusters.spareIdle) }}
{{ include "podgate.arg" (list $root "kubeImpersonation" $v.impersonation.mode) }}
{{- if ne $v.impersonation.mode "off" }}
{{- with $v.impersonation.userPrefix }}
{{ include "podgate.arg" (list $root "kubeImpersonateUserPrefix" .) }}
{{- end }}
{{- with $v.impersonation.groupPrefix }}
{{ include "podgate.arg" (list $root "kubeImpersonateGroupPrefix" .) }}
{{- end }}
{{ include "podgate.arg" (list $root "kubeImpersonateSessionExtra" (ternary "true" "false" $v.impersonation.sessionExtra)) }}
{{ include "podgate.arg" (list $root "kubeImpersonateUid" (ternary "true" "false" $v.impersonation.uid)) }}
{{- end }}
{{- else if eq $c "edge" }}
{{ include "podgate.arg" (list $root "httpAddress" (printf "[::]:%v" $v.httpPort)) }}
{{ include "podgate.arg" (list $root "allowedOrigins" (include "podgate.edge.allowedOrigins" $root)) }}
{{ include "podgate.arg" (list $root "webRoot" "/usr/share/podgate/web") }}
{{- if $v.behindTlsProxy }}
{{ include "podgate.arg" (list $root "behindTlsProxy" "true") }}
{{- /* Every connection comes from the proxy: per-source limits would cap the proxy itself. */}}
{{ include "podgate.arg" (list $root "maxConnectionsPerSource" "0") }}
{{ include "podgate.arg" (list $root "maxUnauthenticatedPerSource" "0") }}
{{- else }}
{{ include "podgate.arg" (list $root "tlsCertHttp" (printf "%s/tls.crt" (include "podgate.httpTlsDir" $root))) }}
{{ include "podgate.arg" (list $root "tlsKeyHttp" (printf "%s/tls.key" (include "podgate.httpTlsDir" $root))) }}
{{- end }}
{{- with $v.trustedProxies }}
{{ include "podgate.arg" (list $root "trustedProxies" (join "," .)) }}
{{ include "podgate.arg" (list $root "forwardedHeader" $v.forwardedHeader) }}
{{- end }}
{{- if $v.authProxy.enabled }}
{{ include "podgate.arg" (list $root "authProxyUserHeader" $v.authProxy.userHeader) }}
{{- with $v.authProxy.groupsHeader }}
{{ include "podgate.arg" (list $root "authProxyGroupsHeader" .) }}
{{- end }}
{{- with $v.authProxy.cidrs }}
{{ include "podgate.arg" (list $root "authProxyCidrs" (join "," .)) }}
{{- end }}
{{- with $v.authProxy.clientNames }}
{{ include "podgate.arg" (list $root "authProxyClientNames" (join "," .)) }}
{{ include "podgate.arg" (list $root "tlsClientCaHttp" (printf "%s/ca.crt" (include "podgate.httpTlsDir" $root))) }}
{{- end }}
{{- end }}
{{ include "podgate.peerArgs" (dict "root" $root "peer" "exec") }}
{{ include "podgate.peerArgs" (dict "root" $root "peer" "policy") }}
{{ include "podgate.peerArgs" (dict "root" $root "peer" "audit") }}
{{ include "podgate.jwtArgs" (dict "root" $root "component" "edge") }}
{{- if $root.Values.oidc.enabled }}
{{ include "podgate.arg" (list $root "oidcIssuer" $root.Values.jwt.issuer) }}
{{ include "podgate.arg" (list $root "oidcClientId" $root.Values.oidc.clientId) }}
{{- if not $root.Values.oidc.publicClient }}
{{ include "podgate.arg" (list $root "oidcClientSecretFile" (printf "%s/client-secret" (include "podgate.oidcDir" $root))) }}
{{- end }}
{{ include "podgate.arg" (list $root "oidcCookieKeyFile" (printf "%s/cookie-key" (include "podgate.oidcDir" $root))) }}
{{ include "podgate.arg" (list $root "oidcScopes" $root.Values.oidc.scopes) }}
{{ include "podgate.arg" (list $root "oidcRedirectUrl" (include "podgate.oidc.redirectUrl" $root)) }}
{{ include "podgate.arg" (list $root "oidcProviderName" $root.Values.oidc.providerName) }}
{{ include "podgate.arg" (list $root "oidcSessionLifetime" $root.Values.oidc.sessionLifetime) }}
{{- end }}
{{- end }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Environment of a component's container: values only the cluster knows. */}}
{{- define "podgate.env" -}}
{{- $root := .root -}}
{{- $c := .component -}}
{{- $v := index $root.Values $c -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if eq $c "audit" }}
# One hash chain per replica, named after the pod (stable for the SQLite StatefulSet).
- name: {{ include "podgate.envName" (list $root "chainId") }}
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if eq $root.Values.audit.store.type "postgresql" }}
- name: {{ include "podgate.envName" (list $root "store") }}
  valueFrom:
    secretKeyRef:
      name: {{ include "podgate.auditDsnSecretName" $root }}
      key: {{ ternary $root.Values.audit.postgresql.existingSecretKey "dsn" (not (empty $root.Values.audit.postgresql.existingSecret)) }}
{{- end }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
