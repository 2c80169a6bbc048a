"""Canonical Huffman coding of non-negative integer symbol streams (numpy, vectorised).

A :class:`HuffmanTable` is the canonical form: the symbols ordered by (code length, symbol) and the number
of codes of each length; codes follow from that alone (Deflate-style), so the table is all a decoder needs.
Code lengths are capped at :data:`MAX_CODE_LEN` (frequencies are halved until the cap holds). Bitstreams
are MSB-first, zero-padded to a whole byte.
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_CODE_LEN = 24
_BY_LENGTH, _BY_SYMBOL = 0, 1
_CHUNK = 1 << 20


class HuffmanError(ValueError):
    """A symbol stream or bitstream that does not match its table."""


def _code_lengths(freqs: Sequence[int]) -> list[int]:
    """Huffman code length per entry of ``freqs`` (all > 0); a lone symbol gets length 1."""
    n = len(freqs)
    if n == 1:
        return [1]
    heap = [(f, i) for i, f in enumerate(freqs)]
    heapq.heapify(heap)
    parent = [0] * (2 * n - 1)
    nxt = n
    while len(heap) > 1:
        f1, a = heapq.heappop(heap)
        f2, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (f1 + f2, nxt))
        nxt += 1
    depth = [0] * (2 * n - 1)
    for node in range(2 * n - 3, -1, -1):   # the root (2n - 2) has depth 0; parents come after children
        depth[node] = depth[parent[node]] + 1
    return depth[:n]


def _varint(out: bytearray, v: int) -> None:
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if pos >= len(buf):
            raise HuffmanError("truncated Huffman table")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7
        if shift > 63:
            raise HuffmanError("corrupt Huffman table (varint too long)")


@dataclass
class HuffmanTable:
    """Canonical Huffman table: ``symbols`` in canonical order, ``counts[l - 1]`` codes of length ``l``."""

    symbols: np.ndarray   # int64
    counts: list[int]

    @classmethod
    def from_stream(cls, stream: np.ndarray | Sequence[int]) -> HuffmanTable:
        """Build the optimal (length-capped) table for the symbols of ``stream``."""
        arr = np.asarray(stream, dtype=np.int64).reshape(-1)
        if arr.size == 0:
            return cls(np.zeros(0, np.int64), [])
        if arr.min() < 0:
            raise HuffmanError("Huffman symbols must be non-negative integers")
        syms, freqs = np.unique(arr, return_counts=True)
        return cls.from_frequencies(syms, freqs)

    @classmethod
    def from_frequencies(cls, symbols: np.ndarray, freqs: np.ndarray) -> HuffmanTable:
        f = [int(x) for x in freqs]
        while True:
            lengths = _code_lengths(f)
            if max(lengths) <= MAX_CODE_LEN:
                break
            f = [max(1, x >> 1) for x in f]
        order = np.lexsort((np.asarray(symbols), np.asarray(lengths)))
        lengths_arr = np.asarray(lengths)[order]
        counts = np.bincount(lengths_arr, minlength=int(lengths_arr.max()) + 1)[1:].tolist()
        return cls(np.asarray(symbols, dtype=np.int64)[order], counts)

    @property
    def max_len(self) -> int:
        return len(self.counts)

    def lengths(self) -> np.ndarray:
        """Code length of each symbol, in canonical order."""
        return np.repeat(np.arange(1, self.max_len + 1), self.counts).astype(np.int64)

    def codes(self) -> np.ndarray:
        """Canonical code of each symbol (as an integer of ``length`` bits), in canonical order."""
        lengths = self.lengths()
        codes = np.zeros(lengths.size, np.int64)
        code = 0
        prev = lengths[0] if lengths.size else 0
        for i, ln in enumerate(lengths.tolist()):
            code <<= ln - prev
            codes[i] = code
            code += 1
            prev = ln
        return codes

    def expected_bits(self, stream: np.ndarray) -> int:
        """Bit length of ``stream`` under this table."""
        arr = np.asarray(stream, dtype=np.int64).reshape(-1)
        if arr.size == 0:
            return 0
        lut = self._lookup(arr)
        return int(self.lengths()[lut].sum())

    def _lookup(self, arr: np.ndarray) -> np.ndarray:
        order = np.argsort(self.symbols, kind="stable")
        sorted_syms = self.symbols[order]
        pos = np.searchsorted(sorted_syms, arr)
        pos = np.clip(pos, 0, max(sorted_syms.size - 1, 0))
        if sorted_syms.size == 0 or not np.array_equal(sorted_syms[pos], arr):
            raise HuffmanError("stream contains a symbol that is not in the Huffman table")
        return order[pos]

    def to_bytes(self) -> bytes:
        """Serialise in the smaller of two layouts (first varint: 0 = by length, 1 = by symbol).

        By length: varint max_len, varint count per length, then per length its symbols in increasing
        order, delta-coded as varints (good for few, scattered symbols). By symbol: varint n, then the
        code length of every symbol 0..n-1 in 5 bits, 0 = unused (good for dense alphabets)."""
        by_len = bytearray([_BY_LENGTH])
        _varint(by_len, self.max_len)
        for c in self.counts:
            _varint(by_len, c)
        start = 0
        for c in self.counts:
            prev = 0
            for s in self.symbols[start:start + c].tolist():
                _varint(by_len, s - prev)
                prev = s
            start += c
        if self.symbols.size == 0:
            return bytes(by_len)
        n = int(self.symbols.max()) + 1
        if 1 + (n.bit_length() + 6) // 7 + (5 * n + 7) // 8 >= len(by_len):
            return bytes(by_len)
        lengths = np.zeros(n, np.int64)
        lengths[self.symbols] = self.lengths()
        by_sym = bytearray([_BY_SYMBOL])
        _varint(by_sym, n)
        bits = ((lengths[:, None] >> np.arange(4, -1, -1)) & 1).astype(np.uint8).reshape(-1)
        by_sym += np.packbits(bits).tobytes()
        return bytes(by_sym)

    @classmethod
    def from_bytes(cls, buf: bytes | memoryview, pos: int = 0) -> tuple[HuffmanTable, int]:
        """Inverse of :meth:`to_bytes`; returns the table and the position after it."""
        layout, pos = _read_varint(buf, pos)
        if layout == _BY_SYMBOL:
            n, pos = _read_varint(buf, pos)
            nbytes = (5 * n + 7) // 8
            if pos + nbytes > len(buf):
                raise HuffmanError("truncated Huffman table")
            bits = np.unpackbits(np.frombuffer(bytes(buf[pos:pos + nbytes]), np.uint8))[:5 * n].astype(np.int64)
            lengths = (bits.reshape(n, 5) << np.arange(4, -1, -1)).sum(1)
            present = np.nonzero(lengths)[0]
            if present.size and lengths.max() > MAX_CODE_LEN:
                raise HuffmanError(f"corrupt Huffman table: code length > {MAX_CODE_LEN}")
            order = present[np.lexsort((present, lengths[present]))]
            max_len = int(lengths.max()) if present.size else 0
            counts = np.bincount(lengths[present], minlength=max_len + 1)[1:].tolist()
            symbols, pos = order.astype(np.int64), pos + nbytes
        elif layout == _BY_LENGTH:
            max_len, pos = _read_varint(buf, pos)
            if max_len > MAX_CODE_LEN:
                raise HuffmanError(f"corrupt Huffman table: code length {max_len} > {MAX_CODE_LEN}")
            counts = []
            for _ in range(max_len):
                c, pos = _read_varint(buf, pos)
                counts.append(c)
            if sum(counts) > len(buf):
                raise HuffmanError("corrupt Huffman table: more symbols than bytes")
            sym_list = []
            for c in counts:
                prev = 0
                for _ in range(c):
                    d, pos = _read_varint(buf, pos)
                    prev += d
                    sym_list.append(prev)
            symbols = np.asarray(sym_list, dtype=np.int64)
        else:
            raise HuffmanError(f"corrupt Huffman table: unknown layout {layout}")
        # Kraft: a valid complete-or-lone prefix code never over-subscribes the code space.
        if sum(c * (1 << (max_len - (i + 1))) for i, c in enumerate(counts)) > (1 << max_len):
            raise HuffmanError("corrupt Huffman table: code lengths over-subscribe the code space")
        return cls(symbols, counts), pos


def encode(stream: np.ndarray | Sequence[int], table: HuffmanTable) -> tuple[bytes, int]:
    """Encode ``stream`` with ``table``; returns (bytes, number of bits)."""
    arr = np.asarray(stream, dtype=np.int64).reshape(-1)
    if arr.size == 0:
        return b"", 0
    idx = table._lookup(arr)
    all_codes, all_lens = table.codes(), table.lengths()
    pieces = []
    for a in range(0, arr.size, _CHUNK):
        codes = all_codes[idx[a:a + _CHUNK]]
        lens = all_lens[idx[a:a + _CHUNK]]
        starts = np.cumsum(lens) - lens
        owner = np.repeat(np.arange(lens.size), lens)
        j = np.arange(int(lens.sum())) - starts[owner]           # bit position inside its code, MSB first
        pieces.append(((codes[owner] >> (lens[owner] - 1 - j)) & 1).astype(np.uint8))
    bits = np.concatenate(pieces)
    return np.packbits(bits).tobytes(), int(bits.size)


def decode(data: bytes | memoryview, nbits: int, count: int, table: HuffmanTable) -> np.ndarray:
    """Decode ``count`` symbols from the first ``nbits`` bits of ``data``; raises on any mismatch."""
    if count == 0:
        if nbits:
            raise HuffmanError("bitstream has bits but no symbols")
        return np.zeros(0, np.int64)
    if table.max_len == 0:
        raise HuffmanError("empty Huffman table for a non-empty stream")
    if nbits > 8 * len(data):
        raise HuffmanError(f"bitstream truncated: {nbits} bits announced, {8 * len(data)} present")
    L = table.max_len
    first_code = np.zeros(L + 1, np.int64)
    first_index = np.zeros(L + 1, np.int64)
    code = idx = 0
    for ln in range(1, L + 1):
        code <<= 1
        first_code[ln], first_index[ln] = code, idx
        c = table.counts[ln - 1]
        code += c
        idx += c
    bits = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))[:nbits]
    bits = np.concatenate([bits, np.zeros(L, np.uint8)]).astype(np.int64)
    out: list[int] = []
    n_out, p = 0, 0
    syms = table.symbols
    while n_out < count:
        if p >= nbits:
            raise HuffmanError(f"bitstream ended after {n_out} of {count} symbols")
        a, b = p, min(p + _CHUNK, nbits)
        peek = np.zeros(b - a, np.int64)
        for j in range(L):
            peek = (peek << 1) | bits[a + j:b + j]
        sym_at = np.full(b - a, -1, np.int64)
        len_at = np.zeros(b - a, np.int64)
        for ln in range(1, L + 1):
            c = peek >> (L - ln)
            off = c - first_code[ln]
            hit = (len_at == 0) & (off >= 0) & (off < table.counts[ln - 1])
            sym_at[hit] = syms[first_index[ln] + off[hit]]
            len_at[hit] = ln
        sym_l, len_l = sym_at.tolist(), len_at.tolist()
        while p < b and n_out < count:
            ln = len_l[p - a]
            if ln == 0 or p + ln > nbits:
                raise HuffmanError(f"invalid code at bit {p}")
            out.append(sym_l[p - a])
            n_out += 1
            p += ln
    if p != nbits:
        raise HuffmanError(f"{nbits - p} bits left over after {count} symbols")
    return np.asarray(out, dtype=np.int64)
