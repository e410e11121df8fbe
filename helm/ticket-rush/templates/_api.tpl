{{/*
The API workload: Deployment, Service and (optionally) HPA of one `python -m app.api` component.
Used by api.yaml (everything the main API serves) and api-checkout.yaml (the checkout bulkhead:
the same app in its own pods, reached by admitted fans' seat-map, booking and payment calls, so
the waiting room's polls cannot starve them). Both take the same ConfigMap and Secret.
  root:      the chart's top-level context
  component: "api" | "api-checkout"
  values:    .Values.api | .Values.apiCheckout
  workers:   uvicorn workers (TR_API_WORKERS) when they differ from the ConfigMap's api.workers
*/}}
{{- define "tr.apiWorkload" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := dict "root" $root "component" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "tr.name" $ctx }}
  labels:
    {{- include "tr.labels" $ctx | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}
  selector:
    matchLabels:
      {{- include "tr.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "tr.labels" $ctx | nindent 8 }}
      annotations:
        {{- include "tr.podAnnotations" $root | nindent 8 }}
    spec:
      serviceAccountName: {{ include "tr.fullname" $root }}-app
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 30
      {{- include "tr.podSpecCommon" $ctx | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "tr.image" $root.Values.image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["python", "-m", "app.api"]
          ports:
            # TR_API_PORT of the ConfigMap: every API pod listens on api.port.
            - {name: http, containerPort: {{ $root.Values.api.port }}, protocol: TCP}
          {{- include "tr.appEnv" $root | nindent 10 }}
          {{- with .workers }}
            # env wins over envFrom: this component's own worker count.
            - name: TR_API_WORKERS
              value: {{ . | quote }}
          {{- end }}
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            # PostgreSQL, Redis and Kafka: a pod that cannot reach them takes no traffic.
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          {{- include "tr.containerCommon" $root | nindent 10 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "tr.name" $ctx }}
  labels:
    {{- include "tr.labels" $ctx | nindent 4 }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "tr.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
      {{- if and (ne $v.service.type "ClusterIP") $v.service.nodePort }}
      nodePort: {{ $v.service.nodePort }}
      {{- end }}
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "tr.name" $ctx }}
  labels:
    {{- include "tr.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "tr.name" $ctx }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies:
        - {type: Percent, value: 100, periodSeconds: 15}
    scaleDown:
      stabilizationWindowSeconds: {{ $v.autoscaling.scaleDownStabilizationSeconds }}
      policies:
        - {type: Percent, value: 20, periodSeconds: 60}
{{- end }}
{{- end -}}
