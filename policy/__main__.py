"""The GitOps stack's policy pack: `pulumi preview --policy-pack policy`. Assembly only; the
rules live in gitops_policies.py."""

from pulumi_policy import PolicyPack

from gitops_policies import policies

PolicyPack(name="gitops-delivery", policies=policies())
