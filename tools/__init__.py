"""cmbcluster-deploy: the steps that put CMBCluster on a cloud account, one CLI each."""
