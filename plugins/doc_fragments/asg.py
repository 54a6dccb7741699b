# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Options and attributes every dataplatform.dask ASG module shares.
    DOCUMENTATION = r"""
options:
  name:
    description:
      - Name of the Auto Scaling Group.
      - The module fails, changing nothing, when the group does not exist in the region.
    type: str
    required: true
    aliases: [group_name]
attributes:
  check_mode:
    support: full
    description:
      - Runs the same reads and comparisons as a real run and skips only the calls that change
        the group, so C(changed) in check mode equals C(changed) of a real run.
  diff_mode:
    support: full
    description:
      - Returns C(diff.before) and C(diff.after) with the fields the module manages.
  platform:
    support: full
    platforms: aws
    description: Runs on the controller against the AWS API.
notes:
  - AWS calls are retried with jittered exponential backoff on throttling and on
    C(ScalingActivityInProgress)/C(ResourceContention).
  - Errors name the action and the group, for example C(start instance refresh on ASG dask-workers).
  - Bad input (sizes out of order, unknown instance ids, a refresh already running) fails before any
    change is made.
"""

    # Options of the modules that can wait for AWS to finish.
    WAIT = r"""
options:
  wait:
    description:
      - Wait, with a botocore waiter, until AWS reports the change complete.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait before failing when O(wait=true).
    type: int
    default: 900
  wait_delay:
    description:
      - Seconds between two polls of the waiter.
    type: int
    default: 15
"""
