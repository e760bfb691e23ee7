{{/* Name of the chart, or nameOverride. */}}
{{- define "idaas-sync-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: fullnameOverride, else "<release>-<name>" (just the
release name when it already contains the chart name). */}}
{{- define "idaas-sync-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "idaas-sync-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "idaas-sync-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idaas-sync-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: exporter
{{- end }}

{{- define "idaas-sync-exporter.labels" -}}
helm.sh/chart: {{ include "idaas-sync-exporter.chart" . }}
{{ include "idaas-sync-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "idaas-sync-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "idaas-sync-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* More than one replica: a StatefulSet of shards. */}}
{{- define "idaas-sync-exporter.sharded" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* RRSA through ack-pod-identity-webhook (a role name) or spelled out (ARNs). */}}
{{- define "idaas-sync-exporter.rrsaWebhook" -}}
{{- if and .Values.credentials.rrsa.enabled .Values.credentials.rrsa.roleName }}true{{ end }}
{{- end }}
{{- define "idaas-sync-exporter.rrsaManual" -}}
{{- if and .Values.credentials.rrsa.enabled .Values.credentials.rrsa.roleArn }}true{{ end }}
{{- end }}

{{/* The pod template shared by the Deployment and the StatefulSet. */}}
{{- define "idaas-sync-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "idaas-sync-exporter.selectorLabels" . | nindent 4 }}
    {{- if include "idaas-sync-exporter.rrsaWebhook" . }}
    # ack-pod-identity-webhook (>= 0.2.0) injects the RRSA token and variables into this pod.
    pod-identity.alibabacloud.com/injection: "on"
    {{- end }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: exporter
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "idaas-sync-exporter.serviceAccountName" . }}
  # The exporter never calls the Kubernetes API. (RRSA mounts its own projected token.)
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 30
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: exporter
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config.file=/etc/idaas-sync-exporter/config.yaml
        - --log.level={{ .Values.logLevel }}
        - --log.format={{ .Values.logFormat }}
        {{- if .Values.demo }}
        - --demo
        {{- end }}
        {{- if include "idaas-sync-exporter.sharded" . }}
        # Pod <name>-N polls shard N of {{ .Values.replicas }}.
        - --shard.index=auto
        - --shard.count={{ .Values.replicas }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        - name: IDAAS_EXPORTER_STATE_FILE
          value: /var/lib/idaas-sync-exporter/state.json
        - name: IDAAS_EXPORTER_WEB_LISTEN_ADDRESS
          value: ":10151"
        {{- with .Values.credentials.existingSecret }}
        - name: ALIBABA_CLOUD_ACCESS_KEY_ID
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.credentials.accessKeyIdKey }}
        - name: ALIBABA_CLOUD_ACCESS_KEY_SECRET
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.credentials.accessKeySecretKey }}
        {{- if $.Values.credentials.securityTokenKey }}
        - name: ALIBABA_CLOUD_SECURITY_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.credentials.securityTokenKey }}
        {{- end }}
        {{- end }}
        {{- if include "idaas-sync-exporter.rrsaManual" . }}
        - name: ALIBABA_CLOUD_ROLE_ARN
          value: {{ .Values.credentials.rrsa.roleArn | quote }}
        - name: ALIBABA_CLOUD_OIDC_PROVIDER_ARN
          value: {{ required "credentials.rrsa.oidcProviderArn is required with credentials.rrsa.roleArn" .Values.credentials.rrsa.oidcProviderArn | quote }}
        - name: ALIBABA_CLOUD_OIDC_TOKEN_FILE
          value: /var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token
        - name: ALIBABA_CLOUD_ROLE_SESSION_NAME
          value: {{ include "idaas-sync-exporter.fullname" . | quote }}
        {{- with .Values.credentials.rrsa.stsRegion }}
        - name: ALIBABA_CLOUD_STS_REGION
          value: {{ . | quote }}
        {{- end }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: 10151
          protocol: TCP
      # /-/healthy: the process serves. /-/ready: every instance was polled successfully once
      # (or the state was restored). Neither needs credentials or basic auth.
      livenessProbe:
        httpGet:
          path: /-/healthy
          port: metrics
        initialDelaySeconds: 5
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /-/ready
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: state
          mountPath: /var/lib/idaas-sync-exporter
        - name: config
          mountPath: /etc/idaas-sync-exporter
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if include "idaas-sync-exporter.rrsaManual" . }}
        - name: rrsa-oidc-token
          mountPath: /var/run/secrets/ack.alibabacloud.com/rrsa-tokens
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "idaas-sync-exporter.fullname" . }}-config
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
    {{- if not (and (include "idaas-sync-exporter.sharded" .) .Values.persistence.enabled) }}
    {{- if and .Values.persistence.enabled (not (include "idaas-sync-exporter.sharded" .)) }}
    - name: state
      persistentVolumeClaim:
        claimName: {{ .Values.persistence.existingClaim | default (printf "%s-state" (include "idaas-sync-exporter.fullname" .)) }}
    {{- else }}
    # No persistence: counters restart at zero with every new pod.
    - name: state
      emptyDir: {}
    {{- end }}
    {{- end }}
    {{- if include "idaas-sync-exporter.rrsaManual" . }}
    - name: rrsa-oidc-token
      projected:
        defaultMode: 0444
        sources:
          - serviceAccountToken:
              audience: sts.aliyuncs.com
              expirationSeconds: {{ .Values.credentials.rrsa.tokenExpirationSeconds }}
              path: token
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
