"""Who may call what: tokens, JWTs, roles, TLS material and the interceptors enforcing them.

Pure credential logic (``principals``, ``tokens``, ``jwt_verify``, ``authenticator``)
knows nothing of gRPC; ``tls`` and ``interceptors`` turn it into server credentials
and interceptors that the control plane and the replicas install.
"""
