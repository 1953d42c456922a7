# Two small bases built from Debian's busybox-static, for images no reachable registry serves:
#   --target busybox      the busybox layout the official Prometheus, Alertmanager (quay.io/prometheus/
#                         busybox) and Jaeger (Alpine) images run on: applets in /bin, root and nobody
#   --target distroless   gcr.io/distroless/static-debian12:debug-nonroot (deploy/images.env:
#                         COLLECTOR_RUNTIME_IMAGE): applets only under /busybox, user nonroot (65532)
# Both carry the CA bundle, tzdata and a /tmp of mode 1777.
ARG BASE
FROM ${BASE} AS tools
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox-static ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /common/etc/ssl/certs /common/usr/share /common/tmp \
 && chmod 1777 /common/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /common/etc/ssl/certs/ \
 && cp -a /usr/share/zoneinfo /common/usr/share/ \
 && mkdir -p /busybox-root/bin /busybox-root/etc \
 && cp /bin/busybox /busybox-root/bin/busybox \
 && for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "/busybox-root/bin/$applet"; done \
 && printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >/busybox-root/etc/passwd \
 && printf 'root:x:0:\nnobody:x:65534:\n' >/busybox-root/etc/group \
 && mkdir -p /distroless-root/busybox /distroless-root/etc /distroless-root/home/nonroot \
 && cp /bin/busybox /distroless-root/busybox/busybox \
 && for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "/distroless-root/busybox/$applet"; done \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/distroless-root/etc/passwd \
 && printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >/distroless-root/etc/group \
 && chown 65532:65532 /distroless-root/home/nonroot

FROM scratch AS busybox
COPY --from=tools /common/ /
COPY --from=tools /busybox-root/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]

FROM scratch AS distroless
COPY --from=tools /common/ /
COPY --from=tools /distroless-root/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532
WORKDIR /home/nonroot
ENTRYPOINT ["/busybox/sh"]
