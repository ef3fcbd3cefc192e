"""Datagrams read and answered in batches: libc's recvmmsg and sendmmsg.

Why a module of its own: with the answers kept by query octets, what a
worker spends per answer is mostly two system calls (recvfrom, sendto) and
the address tuples Python builds and parses for them. ``DatagramBatch``
reads up to ``size`` datagrams with one recvmmsg and sends their answers
with one sendmmsg, through arrays built once (the headers, their iovecs,
the source addresses and one 64 KiB slot per datagram, in anonymous
memory the kernel backs only where it writes). An answer goes back to the
address its query came from as the kernel wrote it (IPv4 or IPv6):
no address tuple is made unless the slow path or the rate limiter needs
one (``address``).

``LIBC`` is libc's pair of functions, looked up once; None where libc
lacks them (not Linux, or an old libc): the worker then reads with
recvfrom and answers with sendto, one datagram at a time.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import socket
import struct

#: One datagram's slot: the largest UDP payload, whichever the family.
SLOT = 1 << 16
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


class _SockaddrStorage(ctypes.Structure):
    _fields_ = [("data", ctypes.c_char * 128)]


_NAME_SIZE = ctypes.sizeof(_SockaddrStorage)
_HDR_SIZE = ctypes.sizeof(_Mmsghdr)
_IOV_SIZE = ctypes.sizeof(_Iovec)
_PTR_SIZE = ctypes.sizeof(ctypes.c_void_p)
# Field offsets within one mmsghdr, in units of the memoryview they are read through.
_NAME_PTR = _Msghdr.msg_name.offset // _PTR_SIZE
_NAMELEN = _Msghdr.msg_namelen.offset // 4
_MSG_LEN = _Mmsghdr.msg_len.offset // 4
_HDR_PTRS, _HDR_INTS = _HDR_SIZE // _PTR_SIZE, _HDR_SIZE // 4
_IOV_LEN = _Iovec.iov_len.offset // _PTR_SIZE  # (iov_base first)
_IOV_PTRS = _IOV_SIZE // _PTR_SIZE
_IN = struct.Struct("!H4s")  # sockaddr_in after its family: port, address
_IN6 = struct.Struct("!HI16s")  # sockaddr_in6 after its family: port, flow info, address
_FAMILY = struct.Struct("=H")  # (host order, as the scope ID after the address)
_SCOPE = struct.Struct("=I")


def _load():
    """(recvmmsg, sendmmsg) from the libc this process runs with, or None:
    looked up once. (By the process's own symbols, as
    aliasd.listen.worker's prctl: ctypes.util.find_library runs ldconfig
    and cost every process 2 MiB of imports and pages.)"""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    recv.restype = send.restype = ctypes.c_int
    return recv, send


LIBC = _load()


class DatagramBatch:
    """Buffers for ``size`` datagrams in and ``size`` answers out, built
    once per worker (after the fork: its own pages) and used for each of
    its sockets in turn.

    ``serve(fd, ...)`` reads what is queued (up to ``size``) and sends
    the answers; for each datagram i, ``data(i)`` is its octets and
    ``address(i)`` its source as recvfrom gives it.
    """

    def __init__(self, size: int, libc=None):
        self.size = size
        self.recvmmsg, self.sendmmsg = libc or LIBC
        self._in = mmap.mmap(-1, size * SLOT)  # (anonymous: pages exist once written)
        self._out_size = size * SLOT
        self._out = mmap.mmap(-1, self._out_size)
        self._out_used = 0  # octets of the answers queued, end to end from the start
        self._in_hdrs = (_Mmsghdr * size)()
        self._out_hdrs = (_Mmsghdr * size)()
        self._names = (_SockaddrStorage * size)()
        in_iovs, out_iovs = (_Iovec * size)(), (_Iovec * size)()
        self._keep = (in_iovs, out_iovs)
        in_base = ctypes.addressof(ctypes.c_char.from_buffer(self._in))
        out_base = ctypes.addressof(ctypes.c_char.from_buffer(self._out))
        names = ctypes.addressof(self._names)
        for i in range(size):
            in_iovs[i].iov_base, in_iovs[i].iov_len = in_base + i * SLOT, SLOT
            for hdrs, iovs in ((self._in_hdrs, in_iovs), (self._out_hdrs, out_iovs)):
                hdr = hdrs[i].msg_hdr
                hdr.msg_iov = ctypes.addressof(iovs) + i * _IOV_SIZE
                hdr.msg_iovlen = 1
            self._in_hdrs[i].msg_hdr.msg_name = names + i * _NAME_SIZE
            self._in_hdrs[i].msg_hdr.msg_namelen = _NAME_SIZE
        self._names_base = names
        self._in_ints = memoryview(self._in_hdrs).cast("B").cast("I")
        self._out_ints = memoryview(self._out_hdrs).cast("B").cast("I")
        self._out_ptrs = memoryview(self._out_hdrs).cast("B").cast("P")
        self._out_iovs = memoryview(out_iovs).cast("B").cast("P")
        self._out_base = out_base
        self._name_bytes = memoryview(self._names).cast("B")
        self._in_addr = ctypes.addressof(self._in_hdrs)
        self._out_addr = ctypes.addressof(self._out_hdrs)
        self.count = 0  # datagrams read by the last ``receive``
        self.queued = 0  # answers waiting for ``flush``

    def receive(self, fd: int) -> int:
        """Read up to ``size`` datagrams from ``fd`` without waiting; how
        many (0: none queued). An error queued on the socket (ICMP) is
        consumed and reading goes on, as recvfrom's callers do."""
        ints = self._in_ints
        for i in range(self.count):  # the kernel wrote the source's length there
            ints[i * _HDR_INTS + _NAMELEN] = _NAME_SIZE
        self.count = 0
        for _ in range(4):
            got = self.recvmmsg(fd, self._in_addr, self.size, _MSG_DONTWAIT, None)
            if got >= 0:
                self.count = got
                return got
            if ctypes.get_errno() in _AGAIN:
                return 0
        return 0

    def serve(self, fd: int, kept, limit, unkept) -> int:
        """Read one batch from ``fd`` and answer it; how many were read.
        ``kept(data)``: a datagram's answer, or None (``unkept(data, i)``
        takes it then); ``limit(i, answer)``, if not None: the answer to
        send (the rate limiter's), or None. The answers go with one
        sendmmsg, each to its datagram's source. (One loop over locals:
        this is most of a worker's Python per answer.)"""
        count = self.receive(fd)
        if not count:
            return 0
        inbuf, in_ints, out, out_size = self._in, self._in_ints, self._out, self._out_size
        out_iovs, out_ptrs, out_ints = self._out_iovs, self._out_ptrs, self._out_ints
        out_base, names_base = self._out_base, self._names_base
        queued = used = 0
        try:
            for i in range(count):
                hdr = i * _HDR_INTS
                start = i * SLOT
                data = inbuf[start:start + in_ints[hdr + _MSG_LEN]]
                try:
                    response = kept(data)
                except Exception:  # noqa: BLE001 - unkept: the full path answers and logs it
                    response = None
                if response is None:
                    unkept(data, i)
                    continue
                if limit is not None:
                    response = limit(i, response)
                    if response is None:
                        continue
                size = len(response)
                if used + size > out_size:  # (not with answers under 64 KiB: room for one each)
                    self.queued, self._out_used = queued, used
                    self.flush(fd)
                    queued = used = 0
                out[used:used + size] = response  # (end to end: only the pages written are backed)
                iov = queued * _IOV_PTRS
                out_iovs[iov] = out_base + used
                out_iovs[iov + _IOV_LEN] = size
                out_ptrs[queued * _HDR_PTRS + _NAME_PTR] = names_base + i * _NAME_SIZE
                out_ints[queued * _HDR_INTS + _NAMELEN] = in_ints[hdr + _NAMELEN]
                queued += 1
                used += size
        finally:  # (an error in ``unkept`` or ``limit`` goes to the caller; what is answered goes out)
            if queued:
                self.queued, self._out_used = queued, used
                self.flush(fd)
        return count

    def data(self, i: int) -> bytes:
        start = i * SLOT
        return self._in[start:start + self._in_ints[i * _HDR_INTS + _MSG_LEN]]

    def address(self, i: int) -> tuple:
        """Datagram i's source as recvfrom gives it: (host, port) for IPv4,
        (host, port, flow info, scope ID) for IPv6."""
        start = i * _NAME_SIZE
        names = self._name_bytes
        if _FAMILY.unpack_from(names, start)[0] == socket.AF_INET6:
            port, flow, host = _IN6.unpack_from(names, start + 2)
            scope = _SCOPE.unpack_from(names, start + 24)[0]
            return socket.inet_ntop(socket.AF_INET6, host), port, flow, scope
        port, host = _IN.unpack_from(names, start + 2)
        return socket.inet_ntop(socket.AF_INET, host), port

    def flush(self, fd: int) -> int:
        """Send the queued answers; how many went. An answer the socket
        refuses (a full send buffer, an unreachable client) is dropped and
        the rest are sent, as with sendto one at a time: UDP may drop."""
        queued, self.queued, self._out_used = self.queued, 0, 0
        done = sent = 0
        while done < queued:
            got = self.sendmmsg(fd, self._out_addr + done * _HDR_SIZE, queued - done, 0)
            if got > 0:
                done += got
                sent += got
            elif got == 0 or ctypes.get_errno() != errno.EINTR:
                done += 1  # the one the kernel refused: dropped
        return sent

