from gatehouse.engines.text_stream import TextStream


def feed_all(stream, pieces):
    return [stream.feed(p) for p in pieces] + [stream.finish()]


def test_plain_text_passes_straight_through():
    out = feed_all(TextStream(), [b"Hel", b"lo", b" world"])
    assert out == ["Hel", "lo", " world", ""]


def test_multibyte_characters_are_never_split():
    snowman = "☃".encode()
    out = feed_all(TextStream(), [b"a" + snowman[:1], snowman[1:2], snowman[2:] + b"b"])
    assert out == ["a", "", "☃b", ""]


def test_stop_sequence_is_cut_and_never_leaked():
    stream = TextStream(stop=["END"])
    out = feed_all(stream, [b"one E", b"N", b"D two"])
    assert "".join(out) == "one " and stream.stopped and stream.text == "one "
    assert out[:2] == ["one ", ""]  # "E" and "N" are held back until they prove harmless or not


def test_held_back_text_is_released_when_it_is_not_a_stop():
    stream = TextStream(stop=["END"])
    out = feed_all(stream, [b"E", b"N", b"X", b" fin"])
    assert out == ["", "", "ENX", " fin", ""]


def test_earliest_of_several_stops_wins():
    stream = TextStream(stop=["cd", "b"])
    assert "".join(feed_all(stream, [b"abcd"])) == "a"


def test_stop_split_across_many_tokens():
    stream = TextStream(stop=["<|end|>"])
    pieces = [b"x", b"<", b"|", b"en", b"d|", b">", b"y"]
    assert "".join(feed_all(stream, pieces)) == "x" and stream.stopped
