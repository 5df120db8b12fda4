#!/usr/bin/python
# A module with a no_log argument, for private_stdin.yml: it says only how long the secret was.

DOCUMENTATION = r'''
module: evt_secret_length
short_description: The length of a secret (a test module)
options:
  secret:
    description: The secret.
    type: str
    required: true
    no_log: true
'''

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={'secret': {'type': 'str', 'required': True, 'no_log': True}})
    module.exit_json(changed=False, length=len(module.params['secret']))


if __name__ == '__main__':
    main()
