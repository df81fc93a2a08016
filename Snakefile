# vlarisk: rollouts -> datasets -> splits -> trained risk predictors -> results.json
#
# Targets:
#   all    every configured source prepared, trained and evaluated (the quick default)
#          and every multi-model group of `multi_model` (rules/multi.smk)
#   single results/models/<source>/results.json (or any other output path)
#   paper  everything above plus multi-model groups, ablations, tables and figures (docs/paper.md)


# The default config applies only when no --configfile is given: another config
# (config/paper.yaml, tests/data/tiny_config.yaml) then replaces it instead of merging into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


# common.smk validates the config and loads the plan (src/vlarisk/planning.py); then one file per stage.
include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/multi.smk"
include: "rules/ablations.smk"
include: "rules/paper.smk"


localrules:
    all,
    paper,
    split_dataset,


rule all:
    default_target: True
    input:
        PLAN.all_targets(),
