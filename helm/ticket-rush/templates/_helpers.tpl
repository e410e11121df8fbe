{{/* Names: Deployments are <release>-<component>, e.g. ticket-rush-booking-consumer. */}}
{{- define "tr.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "tr.name" -}}
{{- printf "%s-%s" (include "tr.fullname" .root) .component -}}
{{- end -}}

{{- define "tr.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ticket-rush
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "tr.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tr.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "tr.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "tr.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Cross-field rules JSON Schema cannot express; rendered (and failing) from the ConfigMap. */}}
{{- define "tr.validate" -}}
{{- $partitions := int (index .Values.kafka.topics "booking-requests") -}}
{{- if gt (int .Values.bookingConsumer.replicas) $partitions -}}
{{- fail (printf "bookingConsumer.replicas (%d) must not exceed the booking-requests partitions (kafka.topics.booking-requests = %d): extra consumers would sit idle" (int .Values.bookingConsumer.replicas) $partitions) -}}
{{- end -}}
{{- range $key := list "api" "apiCheckout" -}}
{{- $scaling := (index $.Values $key).autoscaling -}}
{{- if and $scaling.enabled (gt (int $scaling.minReplicas) (int $scaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) must not exceed %s.autoscaling.maxReplicas (%d)" $key (int $scaling.minReplicas) $key (int $scaling.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Settings every app process reads: the ConfigMap plus the three secret connection values. */}}
{{- define "tr.appEnv" -}}
envFrom:
  - configMapRef:
      name: {{ include "tr.fullname" . }}-config
env:
  - name: TR_DATABASE_URL
    valueFrom:
      secretKeyRef: {name: {{ include "tr.secretName" . }}, key: TR_DATABASE_URL}
  - name: TR_REDIS_URL
    valueFrom:
      secretKeyRef: {name: {{ include "tr.secretName" . }}, key: TR_REDIS_URL}
  - name: TR_JWT_SECRET
    valueFrom:
      secretKeyRef: {name: {{ include "tr.secretName" . }}, key: TR_JWT_SECRET}
{{- end -}}

{{- define "tr.podSpecCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $.root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "tr.selectorLabels" $ | nindent 8 }}
  {{- end }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- end -}}

{{- define "tr.containerCommon" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{- define "tr.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
