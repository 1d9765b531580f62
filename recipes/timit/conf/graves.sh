# Settings of recipes/timit/run.sh --graves: the optimiser of Graves, Mohamed
# and Hinton (2013): SGD, lr 1e-4, momentum 0.9, one utterance or two per
# update (TIMIT utterances are 300-800 frames), uniform init in [-0.1, 0.1],
# Gaussian weight noise std 0.075.  The paper adds the noise only after a
# noise-free run has converged, starting from its weights; here the noise is
# on from the start (slower, same target).  The paper trains on 61 phones;
# this recipe trains on the 48 of Lee and Hon, as Kaldi does; both are scored
# on 39.  --epochs, when given, takes the place of the value below.
: "${epochs:=150}"
hidden=250
layers=3
optimizer=sgd
lr=1e-4
batch_frames=1000
weight_noise=0.075
patience=10
init_range=0.1
