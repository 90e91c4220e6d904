#!/usr/bin/env python3
"""Decode libphonenumber's prefix -> time-zone map (the Java serialised file
com/google/i18n/phonenumbers/timezones/data/map_data inside geocoder.jar, as Debian's
libphonenumber8-java ships it) into text lines "prefix|Zone&Zone", the format of
libphonenumber's own resources/timezones/map_data.txt.

usage: libphonenumber-timezones.py GEOCODER_JAR > lines.txt

The file is the output of PhonePrefixMap.writeExternal through a java.io.ObjectOutputStream:
the stream header, then block-data records holding a boolean (flyweight storage or not)
and the storage itself (see FlyweightMapStorage / DefaultMapStorage in libphonenumber's
prefixmapper).  Only the block-data framing of the serialisation protocol is needed.
"""
import struct
import sys
import zipfile

MEMBER = 'com/google/i18n/phonenumbers/timezones/data/map_data'


def block_data(raw):
    """The concatenated payload of the block-data records after the stream header."""
    if raw[:4] != b'\xac\xed\x00\x05':
        sys.exit('map_data: not a Java serialisation stream')
    out, i = bytearray(), 4
    while i < len(raw):
        tag = raw[i]
        if tag == 0x77:            # TC_BLOCKDATA, 1-byte length
            n = raw[i + 1]
            out += raw[i + 2:i + 2 + n]
            i += 2 + n
        elif tag == 0x7A:          # TC_BLOCKDATALONG, 4-byte length
            n = struct.unpack('>i', raw[i + 1:i + 5])[0]
            out += raw[i + 5:i + 5 + n]
            i += 5 + n
        else:
            sys.exit('map_data: unexpected record 0x%02x at byte %d' % (tag, i))
    return bytes(out)


class Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, fmt):
        v = struct.unpack_from('>' + fmt, self.b, self.i)
        self.i += struct.calcsize('>' + fmt)
        return v[0]

    def utf(self):
        n = self.take('H')
        s = self.b[self.i:self.i + n].decode('utf-8')
        self.i += n
        return s


def decode(raw):
    r = Reader(block_data(raw))
    entries = []
    if r.take('?'):                # FlyweightMapStorage
        prefix_size, index_size = r.take('i'), r.take('i')
        for _ in range(r.take('i')):
            r.take('i')            # possible lengths: not needed
        pool = [r.utf() for _ in range(r.take('i'))]
        word = {2: 'h', 4: 'i'}
        for _ in range(r.take('i')):
            prefix = r.take(word[prefix_size])
            entries.append((prefix, pool[r.take(word[index_size])]))
    else:                          # DefaultMapStorage
        for _ in range(r.take('i')):
            prefix = r.take('i')
            entries.append((prefix, r.utf()))
    return entries


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    raw = zipfile.ZipFile(sys.argv[1]).read(MEMBER)
    for prefix, zones in decode(raw):
        print('%d|%s' % (prefix, zones))


if __name__ == '__main__':
    main()
