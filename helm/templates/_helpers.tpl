{{/*
Names, labels, and the rules the deploy tools (tools/cloud.py) share with this chart.
Every cloud difference is decided here, in one place; the templates only ask.
*/}}

{{/* The chart's name. */}}
{{- define "cmbcluster.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped prefix: the release name, or release-chart when the release name lacks the chart name. */}}
{{- define "cmbcluster.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "cmbcluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels. Call with the root context. */}}
{{- define "cmbcluster.labels" -}}
helm.sh/chart: {{ include "cmbcluster.chart" . }}
{{ include "cmbcluster.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cmbcluster
{{- end }}

{{- define "cmbcluster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cmbcluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "backend"). */}}
{{- define "cmbcluster.componentLabels" -}}
{{ include "cmbcluster.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cmbcluster.componentSelector" -}}
{{ include "cmbcluster.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Fixed names the deploy tools also use (constants in tools/cloud.py). */}}
{{- define "cmbcluster.backendServiceAccount" -}}cmbcluster-ksa{{- end }}
{{- define "cmbcluster.userServiceAccount" -}}cmbcluster-user-sa{{- end }}
{{- define "cmbcluster.userVolumesRole" -}}{{ include "cmbcluster.fullname" . }}-{{ .Release.Namespace }}-user-volumes{{- end }}
{{- define "cmbcluster.backendSecret" -}}cmbcluster-backend-secrets{{- end }}
{{- define "cmbcluster.frontendSecret" -}}cmbcluster-frontend-secrets{{- end }}

{{/* Public URLs: explicit values, else https://api.{baseDomain} and https://{baseDomain}. */}}
{{- define "cmbcluster.apiUrl" -}}
{{- .Values.global.apiUrl | default (printf "https://api.%s" .Values.global.baseDomain) }}
{{- end }}

{{- define "cmbcluster.frontendUrl" -}}
{{- .Values.global.frontendUrl | default (printf "https://%s" .Values.global.baseDomain) }}
{{- end }}

{{- define "cmbcluster.apiHost" -}}
{{- printf "api.%s" .Values.global.baseDomain }}
{{- end }}

{{/*
Bucket-name rules. tools/cloud.py database_bucket_name() / user_bucket_prefix() give the same
answers; tests/test_chart_buckets.py holds the two equal.
  gcp:   {projectId}-{clusterName}-db
  aws:   {clusterName}-db-{accountId}
  local: {clusterName}-db
*/}}
{{- define "cmbcluster.databaseBucket" -}}
{{- $g := .Values.global }}
{{- if eq $g.cloudProvider "gcp" }}
{{- printf "%s-%s-db" $g.gcp.projectId $g.clusterName }}
{{- else if eq $g.cloudProvider "aws" }}
{{- printf "%s-db-%s" $g.clusterName $g.aws.accountId }}
{{- else }}
{{- printf "%s-db" $g.clusterName }}
{{- end }}
{{- end }}

{{/*
The database's Litestream replica: "" when there is none. tools/database.py replica_url()
gives the same answer; tests/test_chart_buckets.py holds the two equal.
  gcp:   gs://{database bucket}/litestream/cmbcluster.db
  aws:   s3://{database bucket}/litestream/cmbcluster.db
  local: database.backup.url (none when empty)
*/}}
{{- define "cmbcluster.databaseReplicaUrl" -}}
{{- $b := .Values.database.backup }}
{{- $cloud := .Values.global.cloudProvider }}
{{- if $b.enabled }}
{{- if $b.url }}{{ $b.url }}
{{- else if eq $cloud "gcp" }}{{ printf "gs://%s/litestream/cmbcluster.db" (include "cmbcluster.databaseBucket" .) }}
{{- else if eq $cloud "aws" }}{{ printf "s3://%s/litestream/cmbcluster.db" (include "cmbcluster.databaseBucket" .) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cmbcluster.litestreamImage" -}}
{{- $i := .Values.database.backup.image }}
{{- if $i.digest }}{{ printf "%s@%s" $i.repository $i.digest }}{{ else }}{{ printf "%s:%s" $i.repository ($i.tag | toString) }}{{ end }}
{{- end }}

{{- define "cmbcluster.userBucketPrefix" -}}
{{- printf "%s-user" .Values.global.clusterName }}
{{- end }}

{{/* Why a bucket name is invalid (same rule as tools/cloud.py check_bucket_name), or nothing. */}}
{{- define "cmbcluster.bucketProblem" -}}
{{- if or (not (regexMatch "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$" .)) (contains "--" .) }}
{{- printf "bucket name %q is invalid (3-63 lowercase letters, digits, single hyphens)" . }}
{{- end }}
{{- end }}

{{/* An image reference: repository@digest when a digest is set, else repository:tag.
     (dict "root" $ "image" .Values.backend.image "name" "backend") */}}
{{- define "cmbcluster.image" -}}
{{- $g := .root.Values.global }}
{{- $repo := .image.repository | default (printf "%s/%s-%s" $g.registry $g.clusterName .name) }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* Auth providers the deployment offers: "true" or "". A provider is on when AUTH_PROVIDER
     names it (or is auto) and its client id is set; the schema requires the rest. */}}
{{- define "cmbcluster.googleEnabled" -}}
{{- $c := .Values.backend.config }}
{{- if and (has $c.authProvider (list "auto" "google")) $c.googleClientId }}true{{ end }}
{{- end }}

{{- define "cmbcluster.cognitoEnabled" -}}
{{- $c := .Values.backend.config }}
{{- if and (has $c.authProvider (list "auto" "cognito")) $c.cognitoClientId }}true{{ end }}
{{- end }}

{{/* Storage: the CSI driver and its mount options on this cloud, as a JSON list.
     On AWS a "region" option is added from global.aws.region when the list has none. */}}
{{- define "cmbcluster.csiDriver" -}}
{{- $cloud := .Values.global.cloudProvider }}
{{- if eq $cloud "gcp" }}{{ .Values.storage.gcp.driver }}
{{- else if eq $cloud "aws" }}{{ .Values.storage.aws.driver }}
{{- end }}
{{- end }}

{{- define "cmbcluster.mountOptions" -}}
{{- $cloud := .Values.global.cloudProvider }}
{{- $opts := list }}
{{- if eq $cloud "gcp" }}
{{- $opts = .Values.storage.gcp.mountOptions }}
{{- else if eq $cloud "aws" }}
{{- $opts = .Values.storage.aws.mountOptions }}
{{- $hasRegion := false }}
{{- range $opts }}{{ if hasPrefix "region" . }}{{ $hasRegion = true }}{{ end }}{{ end }}
{{- if not $hasRegion }}
{{- $opts = append $opts (printf "region %s" .Values.global.aws.region) }}
{{- end }}
{{- end }}
{{- $opts | toJson }}
{{- end }}

{{/* IAM binding of a Kubernetes service account: (dict "root" $ "role" "backend"|"user").
     Workload Identity on GCP, IRSA on AWS, nothing on a local cluster. YAML map or empty. */}}
{{- define "cmbcluster.serviceAccountAnnotations" -}}
{{- $g := .root.Values.global }}
{{- if eq $g.cloudProvider "gcp" }}
{{- $email := $g.gcp.workloadIdentityEmail }}
{{- if eq .role "user" }}{{ $email = $g.gcp.userWorkloadIdentityEmail }}{{ end }}
{{- with $email }}
iam.gke.io/gcp-service-account: {{ . | quote }}
{{- end }}
{{- else if eq $g.cloudProvider "aws" }}
{{- $arn := $g.aws.roleArn }}
{{- if eq .role "user" }}{{ $arn = $g.aws.userRoleArn }}{{ end }}
{{- with $arn }}
eks.amazonaws.com/role-arn: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod annotations user environment pods need on this cloud (JSON map). */}}
{{- define "cmbcluster.userPodAnnotations" -}}
{{- if eq .Values.global.cloudProvider "gcp" }}
{{- dict "gke-gcsfuse/volumes" "true" | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/* How a user environment mounts its bucket, for the pod manager:
     csi-inline (GCS FUSE), csi-static-pv (Mountpoint for S3 has no inline volumes), none (local). */}}
{{- define "cmbcluster.userVolumeMode" -}}
{{- $cloud := .Values.global.cloudProvider }}
{{- if eq $cloud "gcp" }}csi-inline{{ else if eq $cloud "aws" }}csi-static-pv{{ else }}none{{ end }}
{{- end }}

{{/* CSI volumeAttributes besides bucketName (JSON map). */}}
{{- define "cmbcluster.volumeAttributes" -}}
{{- $cloud := .Values.global.cloudProvider }}
{{- if eq $cloud "gcp" }}
{{- dict "mountOptions" (include "cmbcluster.mountOptions" . | fromJsonArray | join ",") | toJson }}
{{- else if eq $cloud "aws" }}
{{- dict "authenticationSource" "pod" | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/* Ingress. */}}
{{- define "cmbcluster.ingressClass" -}}
{{- if eq .Values.global.cloudProvider "aws" }}alb
{{- else }}{{ .Values.ingress.className | default "nginx" }}
{{- end }}
{{- end }}

{{- define "cmbcluster.tlsSecretName" -}}
{{- .Values.ingress.tls.secretName | default (printf "%s-tls" (include "cmbcluster.fullname" .)) }}
{{- end }}

{{- define "cmbcluster.issuerName" -}}
{{- printf "%s-letsencrypt" (include "cmbcluster.fullname" .) }}
{{- end }}

{{/* "true" when this chart creates a cert-manager Issuer (not on AWS: ACM issues there). */}}
{{- define "cmbcluster.createIssuer" -}}
{{- if and (ne .Values.global.cloudProvider "aws") .Values.ingress.certManager.email (not .Values.ingress.certManager.clusterIssuer) }}true{{ end }}
{{- end }}

{{/* "true" when the chart's issuer answers DNS-01 in Cloud DNS: then it is a ClusterIssuer, since
     cert-manager lends its own (ambient, Workload Identity) credentials to ClusterIssuers only, unless its
     controller runs with --issuer-ambient-credentials
     (https://cert-manager.io/docs/configuration/acme/dns01/google/). */}}
{{- define "cmbcluster.clusterScopedIssuer" -}}
{{- if and (include "cmbcluster.createIssuer" .) (.Values.ingress.certManager.cloudDNS | default dict).project }}true{{ end }}
{{- end }}

{{/* The chart's ClusterIssuer: named after the namespace too, as the name is the cluster's. */}}
{{- define "cmbcluster.clusterIssuerName" -}}
{{- printf "%s-%s" .Release.Namespace (include "cmbcluster.issuerName" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/* cert-manager annotations, or an empty map. */}}
{{- define "cmbcluster.certManagerAnnotations" -}}
{{- $a := dict }}
{{- if ne .Values.global.cloudProvider "aws" }}
{{- if .Values.ingress.certManager.clusterIssuer }}
{{- $_ := set $a "cert-manager.io/cluster-issuer" .Values.ingress.certManager.clusterIssuer }}
{{- else if include "cmbcluster.clusterScopedIssuer" . }}
{{- $_ := set $a "cert-manager.io/cluster-issuer" (include "cmbcluster.clusterIssuerName" .) }}
{{- else if .Values.ingress.certManager.email }}
{{- $_ := set $a "cert-manager.io/issuer" (include "cmbcluster.issuerName" .) }}
{{- end }}
{{- end }}
{{- $a | toJson }}
{{- end }}

{{/* Annotations of the chart's Ingress and of user environment Ingresses (JSON map):
     (dict "root" $ "user" true|false). */}}
{{- define "cmbcluster.ingressAnnotations" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $class := include "cmbcluster.ingressClass" $root }}
{{- $a := include "cmbcluster.certManagerAnnotations" $root | fromJson }}
{{- if eq $v.global.cloudProvider "aws" }}
{{- $_ := set $a "alb.ingress.kubernetes.io/scheme" $v.ingress.aws.scheme }}
{{- $_ := set $a "alb.ingress.kubernetes.io/target-type" "ip" }}
{{- $_ := set $a "alb.ingress.kubernetes.io/listen-ports" "[{\"HTTP\": 80}, {\"HTTPS\": 443}]" }}
{{- $_ := set $a "alb.ingress.kubernetes.io/ssl-redirect" "443" }}
{{- $_ := set $a "alb.ingress.kubernetes.io/ssl-policy" $v.ingress.aws.sslPolicy }}
{{- $_ := set $a "alb.ingress.kubernetes.io/group.name" ($v.ingress.aws.groupName | default (printf "%s-%s" $root.Release.Namespace (include "cmbcluster.fullname" $root)) | trunc 63 | trimSuffix "-") }}
{{- if $v.ingress.aws.certificateArn }}
{{- $_ := set $a "alb.ingress.kubernetes.io/certificate-arn" $v.ingress.aws.certificateArn }}
{{- end }}
{{- else if eq $class "nginx" }}
{{- $_ := set $a "nginx.ingress.kubernetes.io/ssl-redirect" "true" }}
{{- $_ := set $a "nginx.ingress.kubernetes.io/proxy-body-size" $v.ingress.nginx.proxyBodySize }}
{{- end }}
{{- $a | toJson }}
{{- end }}

{{/* Where traffic from the ingress controller comes from, as NetworkPolicy peers (YAML list). */}}
{{- define "cmbcluster.ingressControllerPeers" -}}
{{- $v := .Values }}
{{- if eq $v.global.cloudProvider "aws" }}
{{- range $v.networkPolicy.aws.loadBalancerCidrs }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- else }}
- namespaceSelector:
    matchLabels:
      {{- toYaml $v.networkPolicy.ingressController.namespaceLabels | nindent 6 }}
  podSelector:
    matchLabels:
      {{- toYaml $v.networkPolicy.ingressController.podLabels | nindent 6 }}
{{- end }}
{{- end }}

{{/* Restricted security contexts (Pod Security Standard "restricted"). */}}
{{- define "cmbcluster.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "cmbcluster.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Checks the schema cannot express (it cannot compare two values). Renders nothing; fails with
a message naming the value to fix.
*/}}
{{- define "cmbcluster.validate" -}}
{{- $v := .Values }}
{{- $cloud := $v.global.cloudProvider }}
{{- if and $v.backend.config.cloudProvider (ne $v.backend.config.cloudProvider $cloud) }}
{{- fail (printf "backend.config.cloudProvider is %q but global.cloudProvider is %q: remove backend.config.cloudProvider (global.cloudProvider decides)" $v.backend.config.cloudProvider $cloud) }}
{{- end }}
{{- $backup := $v.database.backup }}
{{- if and (hasPrefix "file://" (include "cmbcluster.databaseReplicaUrl" .)) (not $backup.claimName) }}
{{- fail "database.backup.url is a file:// URL but database.backup.claimName is empty: name the claim mounted at /backup" }}
{{- end }}
{{- $problem := include "cmbcluster.bucketProblem" (include "cmbcluster.databaseBucket" .) }}
{{- if $problem }}
{{- fail (printf "%s: shorten global.clusterName (the database bucket is named from it)" $problem) }}
{{- end }}
{{- if and (eq $cloud "gcp") (not (semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version)) }}
{{- fail (printf "GKE %s is too old: user environments mount their bucket with GCS FUSE in an init container, which needs GKE 1.29 or later" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- $class := include "cmbcluster.ingressClass" . }}
{{- /* GKE's gce controller makes one load balancer, with its own address, per Ingress object
     (https://cloud.google.com/kubernetes-engine/docs/concepts/ingress): each user environment's Ingress
     would get an address of its own while *.baseDomain points at the release's. */}}
{{- if eq $class "gce" }}
{{- fail "ingress.className gce makes a load balancer per Ingress, so user environments' hosts would reach one with no rule for them: use nginx (ingress-nginx)" }}
{{- end }}
{{- if and (eq $cloud "local") (eq $class "alb") }}
{{- fail "ingress.className alb needs EKS: use nginx (or your cluster's own class) on a local cluster" }}
{{- end }}
{{- end }}

{{/* Service annotations: (dict "root" $ "health" "/path"). ALB health checks on AWS. */}}
{{- define "cmbcluster.serviceAnnotations" -}}
{{- $root := .root }}
{{- if eq $root.Values.global.cloudProvider "aws" }}
alb.ingress.kubernetes.io/healthcheck-path: {{ .health | quote }}
{{- end }}
{{- end }}

