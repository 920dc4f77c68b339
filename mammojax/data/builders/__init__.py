"""TFDS builders (array_record, read with ``tfds.data_source``).

``BUILDER_MODULES`` maps each dataset name usable as ``config.dataset.name``
to the module that defines (and, on import, registers) its builder. What the
builders share is in ``base`` (manual_dir, DICOM reading, build machinery),
``whole_image`` and ``graph_examples`` (the two feature sets); no builder
imports another.
"""

BUILDER_MODULES = {
    # Calcification-cluster graphs (MT-GCN).
    "synthetic_calcifications": "mammojax.data.builders.calcification_graphs",
    "dicom_folder_calcifications": (
        "mammojax.data.builders.calcification_graphs"
    ),
    "cbis_ddsm_calcifications": "mammojax.data.builders.cbis_ddsm",
    "inbreast_calcifications": "mammojax.data.builders.inbreast",
    # Whole mammograms with image-level labels (image models, luminal).
    "synthetic_cmmd": "mammojax.data.builders.synthetic_cmmd",
    "cmmd": "mammojax.data.builders.cmmd",
    "cbis_ddsm_masses": "mammojax.data.builders.cbis_ddsm",
    # Mass ROIs (DiagNet, DAE-GCN); cbis_ddsm_masses has the same features.
    "synthetic_masses": "mammojax.data.builders.synthetic_masses",
    "dicom_folder_images": "mammojax.data.builders.dicom_folder_images",
    # Histopathology patches (RMCG).
    "databiox": "mammojax.data.builders.databiox",
}
