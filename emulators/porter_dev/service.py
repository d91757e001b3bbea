"""A Service for operator processes on loopback: one port that forwards each TCP connection to a live replica.

It plays the part of a ClusterIP Service whose endpoints are the ready pods (kube-proxy; endpoints of a pod that
died leave within seconds: https://kubernetes.io/docs/concepts/services-networking/service/). Here a replica that
refuses the connection (killed, not listening yet) is skipped at once, which is what the endpoints controller gets
to after the kubelet reports the container gone. Plain bytes are copied both ways, so TLS ends at the replica."""

from __future__ import annotations

import contextlib
import itertools
import socket
import socketserver
import threading
from collections.abc import Callable


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Service:
    def __init__(self, backends: Callable[[], list[int]]) -> None:
        self._backends = backends
        self._turn = itertools.count()
        service = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = service._connect()
                if upstream is None:
                    return  # like a Service without ready endpoints: the connection is refused
                with upstream:
                    back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
                    back.start()
                    _pipe(self.request, upstream)
                    back.join()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _connect(self) -> socket.socket | None:
        ports = self._backends()
        start = next(self._turn)
        for i in range(len(ports)):
            try:
                return socket.create_connection(("127.0.0.1", ports[(start + i) % len(ports)]), timeout=2)
            except OSError:
                continue
        return None

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
