"""ansible-inventory --list output with 2.19's {"__ansible_unsafe": value} wrappers removed."""
import json
import sys


def plain(value):
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


print(json.dumps(plain(json.load(sys.stdin))))
