"""Canonical Huffman: round trips, optimality, length cap, corrupt input."""
import numpy as np
import pytest

from prunekit.compress.huffman import MAX_CODE_LEN, HuffmanError, HuffmanTable, decode, encode


def _roundtrip(stream: np.ndarray) -> tuple[int, HuffmanTable]:
    table = HuffmanTable.from_stream(stream)
    data, nbits = encode(stream, table)
    assert len(data) == (nbits + 7) // 8
    table2, end = HuffmanTable.from_bytes(table.to_bytes())
    assert end == len(table.to_bytes())
    assert np.array_equal(decode(data, nbits, stream.size, table2), stream)
    return nbits, table


def _entropy(stream: np.ndarray) -> float:
    p = np.unique(stream, return_counts=True)[1] / stream.size
    return float(-(p * np.log2(p)).sum())


def test_uniform_random_stream():
    s = np.random.default_rng(0).integers(0, 32, 20000)
    nbits, table = _roundtrip(s)
    assert nbits == 5 * s.size and table.max_len == 5


def test_skewed_stream_near_entropy():
    s = np.random.default_rng(1).geometric(0.35, 50000) - 1
    nbits, _ = _roundtrip(s)
    h = _entropy(s)
    assert h * s.size <= nbits < (h + 0.1) * s.size     # Huffman is within 1 bit; geometric: much closer


def test_single_symbol_and_empty():
    nbits, table = _roundtrip(np.full(37, 7))
    assert nbits == 37 and table.symbols.tolist() == [7]
    nbits, _ = _roundtrip(np.array([123456789]))
    assert nbits == 1
    table = HuffmanTable.from_stream(np.zeros(0, np.int64))
    assert encode(np.zeros(0, np.int64), table) == (b"", 0)
    assert decode(b"", 0, 0, table).size == 0


def test_length_cap_with_fibonacci_frequencies():
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    table = HuffmanTable.from_frequencies(np.arange(40), np.array(fib))
    assert table.max_len <= MAX_CODE_LEN
    assert sum(c * 2.0 ** -(i + 1) for i, c in enumerate(table.counts)) <= 1.0      # Kraft
    s = np.random.default_rng(2).choice(40, 3000, p=np.array(fib) / sum(fib))
    s = np.concatenate([np.arange(40), s])
    data, nbits = encode(s, table)
    assert np.array_equal(decode(data, nbits, s.size, table), s)


def test_canonical_codes_are_prefix_free():
    s = np.random.default_rng(3).zipf(1.7, 5000)
    table = HuffmanTable.from_stream(s)
    codes = [format(int(c), f"0{ln}b") for c, ln in zip(table.codes(), table.lengths())]
    for i, a in enumerate(codes):
        for b in codes[i + 1:]:
            assert not b.startswith(a) and not a.startswith(b)


def test_errors():
    s = np.array([0, 1, 1, 2, 2, 2, 2])
    table = HuffmanTable.from_stream(s)
    data, nbits = encode(s, table)
    with pytest.raises(HuffmanError, match="not in the Huffman table"):
        encode(np.array([5]), table)
    with pytest.raises(HuffmanError):
        decode(data, nbits - 1, s.size, table)
    with pytest.raises(HuffmanError):
        decode(data, nbits, s.size + 1, table)
    with pytest.raises(HuffmanError, match="truncated"):
        decode(data[:0], nbits, s.size, table)
    with pytest.raises(HuffmanError, match="non-negative"):
        HuffmanTable.from_stream(np.array([-1, 2]))
    with pytest.raises(HuffmanError):
        HuffmanTable.from_bytes(bytes([0, 2, 4, 4]))   # 8 codes of length <= 2: over-subscribed
    with pytest.raises(HuffmanError, match="layout"):
        HuffmanTable.from_bytes(bytes([7, 1]))


def test_table_layouts_pick_the_smaller():
    dense = HuffmanTable.from_stream(np.random.default_rng(4).integers(0, 32, 1000))
    sparse = HuffmanTable.from_stream(np.array([5, 1000, 1000, 70000]))
    assert dense.to_bytes()[0] == 1 and len(dense.to_bytes()) == 2 + 20      # 32 x 5 bits
    assert sparse.to_bytes()[0] == 0
    for t in (dense, sparse):
        back, _ = HuffmanTable.from_bytes(t.to_bytes())
        assert np.array_equal(back.symbols, t.symbols) and back.counts == t.counts
