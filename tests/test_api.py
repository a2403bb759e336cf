"The public API: what `from kit.all import *` gives a notebook, listed here so that a change to it is deliberate."
import importlib
import inspect

import pytest

import kit.all

# each module's public names (its __all__), in the order of the data flow
API = {
    'dicom': '''
    DICOM_EXTS DicomError NotDicomError TruncatedError NoPixelDataError MissingDecoderError MissingTagError
    is_regular_file has_dicom_preamble is_dicom_file path_text get_dicom_files image_ids quiet_uid_warnings max_decode_bytes
    read_dicom check_pixel_length decode_reduction box_reduce stored_range has_pixrep_bug read_pixels slice_position
    sort_slices read_series''',
    'parallel': '''
    LOCK_FILE refuse_inside n_workers parallel_map FolderBusyError folder_lock''',
    'meta': '''
    header_row pixel_stats file_row dicom_meta write_meta read_meta write_dicom_meta''',
    'synth': '''
    LESIONS LABELS TRANSFER_SYNTAXES MIN_BLEED_PIXELS SHIFTED_HOSPITAL MG_SYNTAXES CHEST_FINDINGS NO_FINDING
    PNEUMOTHORAX DX_SYNTAXES DETECTION_LIKES RSNA_OPACITIES head_phantom lesion_mask bleed_profile head_series ct_dataset make_competition
    breast_phantom mg_dataset make_mammography chest_phantom dx_dataset make_detection cr_dataset
    make_segmentation''',
    'window': '''
    DEFAULT_WINDOWS WINDOWS window header_window_count header_window register_window list_windows WindowSpec
    parse_window parse_windows freqhist_bins hist_scaled window_channels body_bbox crop_bbox image_shape resize_to
    resize_longest pad_aspect fit_pixels pixel_reduction dicom_pixels dicom_channels''',
    'cache': '''
    FORMATS PNG16_OFFSET SETTINGS_FILE MANIFEST_FILE MAX_SIZE HEADER_COLUMNS CacheSettings cache_settings output_path
    cache_array cache_file read_manifest read_cache_settings match_sources cached_paths check_positions cache_meta
    preprocess''',
    'transforms': '''
    tolerant_loads DicomWindows DicomBlock fit_channels load_cached LoadCached load_hu LoadHU WindowBatch HUBlock
    image_block GrayToThree''',
    'data': '''
    SNIFF_BYTES COMPRESSED CsvError file_size read_csv_file split_long_ids is_long_format read_labels label_table
    patient_folds slice_positions slice_context''',
    'tasks': '''
    TASKS BUILTIN_TASKS Task register_task list_tasks get_task infer_task reading_task''',
    'boxes': '''
    VINBIGDATA_CLASSES BOX_FORMATS BOX_COLUMNS LABEL_KINDS RSNA_PNEUMONIA_THRESHOLDS BoxFormat box_format box_label_kind
    read_box_labels reads_boxes box_image_labels box_iou fuse_boxes BoxFrame clip_boxes voc_ap average_precisions vinbigdata_map siim_covid_image_map
    rsna_pneumonia_score format_prediction_string prediction_string_problems parse_prediction_string''',
    'masks': '''
    CONVENTIONS RLE_COLUMNS rle_encode rle_problems rle_decode guess_convention MaskLabels read_mask_labels MaskFrame mask_frame
    mask_to_model mask_to_original image_dice siim_dice Triplet apply_triplet triplet_scores search_triplet''',
    'spec': '''
    FOUND RunSpec spec_help spec_dict spec_from_dict write_spec read_spec''',
    'pipeline': '''
    DEFAULT_SPEC_WINDOWS DEFAULT_SIZE cache_problem resolve_spec training_table spec_inputs input_steps spec_block spec_dataloaders test_inputs
    tolerant unreadable_cause''',
    'train': '''
    SCRATCH_HEAD MODEL_PACKAGES WeightsError weights_file make_learner DDPTrainer package_versions best_epoch fit_run train fit_folds
    train_folds''',
    'tasks.classify': '''
    mean_auc weighted_log_loss log_loss_weights LabelColumns MultiLabel SingleLabel Regression''',
    'tasks.segment': '''
    GATE_EMPTY_MASK MASKS_FILE TRIPLET_GRID reads_masks read_mask_table to_model to_original MaskTarget tensor_mask DiceBCELoss
    SiimDice unet_learner read_masks_file mask_of Segment''',
    'tasks.detect': '''
    BOXES_FILE LABEL_FUSE_IOU ENSEMBLE_IOU MAX_DETECTIONS SCORE_THRESHOLD FPN_CHANNELS ID_SUFFIX GATE_EMPTY MIN_TARGET_SIDE
    BOX_SCORES read_box_table TensorBoxes boxes_to_model boxes_to_original BoxTarget tensor_boxes pad_boxes FlipBoxes TimmPyramid
    BoxDetector DetectionLoss box_rows with_none truth_rows detection_rows BoxScore detector_learner detect_batches read_boxes_file
    Detect''',
    'tasks.series': '''
    SERIES_HIDDEN slice_run_folders oof_features series_order SeriesSequences series_sequences pad_series SliceSequence
    SeriesLoss present_metric series_metrics label_group series_dataloaders series_learner series_predictions Series predict_series''',
    'infer': '''
    GATE_COLUMNS RunError read_config load_run training_label_mean run_predictions run_frames predict gate_probabilities''',
    'submit': '''
    SUBMISSION_FORMATS long_submission wide_submission aggregate is_long_sample SubmissionFormat register_format
    list_formats get_format format_problems make_submission max_submission_bytes read_submission validate_submission
    image_shapes write_submission''',
    'kaggle_tools': '''
    KAGGLE_IMAGE REPLACEABLE PLATFORMS MIN_PIP KaggleError is_kaggle_kernel competition_paths submit_to_kaggle
    ImageFreeze read_freeze check_pip resolve_for_image project_root kaggle_image build_wheels check_install run_kit
    kernel_folder push_kernel''',
    'audit': '''
    SUSPECT SKIP column_auc audit_columns meta_table label_problems Audit leak_table drift_table audit write_audit''',
    'eda': '''
    class_column numeric_columns numeric_histograms scatter_pairs correlation_heatmap label_cooccurrence
    category_columns category_counts images_per_patient box_positions intensity_profiles eda_report''',
    'explain': '''
    PICKS BOX_SHOWN default_layer gradcam occlusion explain cam_grid mask_overlays mask_grid box_overlays box_grid write_saliency''',
    'anonymize': '''
    PROFILE pseudonym pseudo_uid profile_tags instance_uid anonymize_dataset may_have_burned_in_text patient_folder
    anonymize_file anonymize''',
    'layout': '''
    MATCH_COLUMNS IMAGE_IDS HEADER_PROBES SPLIT_NAME LayoutError Layout split_folder label_ids header_ids id_match
    find_layout SampleKey sample_ids key_candidates sample_key sample_format''',
    'plan': '''
    LADDERS MIN_EPOCHS MAX_EPOCHS EPOCH_FACTOR EPOCH_FIXED_S RESERVE RUN_FOLDS CONTEXT_COST SERIES_FOLDS SERIES_SLICES SERIES_EPOCHS SERIES_LR
    Ladder Plan image_seconds run_seconds plan_training measure_step measure_render pick_windows pick_series pick_context''',
    'baseline': '''
    stage long_log_loss label_prior label_examples images_figure windows_figure default_out value_scores confounder_check baseline baseline_report''',
    'demo': '''
    run_demo''',
}


@pytest.mark.parametrize('module', list(API))
def test_module_exports_what_is_listed(module):
    assert importlib.import_module(f'kit.{module}').__all__ == API[module].split()


def test_kit_all_is_the_union_with_no_name_twice_and_no_logger():
    names = [n for m in API.values() for n in m.split()]
    assert sorted(kit.all.__all__) == sorted(names)
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)
    assert 'log' not in names


def test_every_public_function_and_class_says_what_it_does_in_one_line():
    for module, names in API.items():
        for name in names.split():
            obj = getattr(importlib.import_module(f'kit.{module}'), name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                doc = inspect.getdoc(obj) or ''
                assert doc and '\n' not in doc.strip(), f'kit.{module}.{name}: {doc!r}'
