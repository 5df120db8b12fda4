"""Test fixture: a copy of a root archive, changed.

  tamper.py SRC DEST byte MEMBER    one byte of MEMBER's data changed (sizes unchanged)
  tamper.py SRC DEST extra          a member the manifest does not list, added at the end
  tamper.py SRC DEST version        the manifest says format version 2
"""
import io
import json
import sys
import tarfile


def main():
    src, dest, how = sys.argv[1:4]
    with tarfile.open(src, 'r:gz') as tar, tarfile.open(dest, 'w:gz', compresslevel=1, format=tarfile.PAX_FORMAT) as out:
        for member in tar:
            data = tar.extractfile(member).read()
            if how == 'byte' and member.name == sys.argv[4]:
                data = bytes([data[0] ^ 1]) + data[1:]
            if how == 'version' and member.name == 'manifest.json':
                manifest = json.loads(data)
                manifest['version'] = 2
                data = json.dumps(manifest).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
        if how == 'extra':
            extra = tarfile.TarInfo('root/etc/qemu/evil.xml')
            extra.size = 5
            out.addfile(extra, io.BytesIO(b'evil\n'))


if __name__ == '__main__':
    main()
