# vlarisk: rollouts -> datasets -> splits -> trained risk predictors -> results.json
#
# Targets:
#   all    every configured source prepared, trained and evaluated (the quick default)
#   single results/models/<source>/results.json (or any other output path)


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/data.smk"
include: "rules/models.smk"


localrules:
    all,
    split_dataset,


rule all:
    input:
        expand("results/models/{source}/results.json", source=SOURCES),
    default_target: True
