"The public API: what `from kit.all import *` gives a notebook, listed here so that a change to it is deliberate."
import importlib
import inspect

import pytest

import kit.all

# each module's public names (its __all__), in the order of the data flow
API = {
    'dicom': '''
    DICOM_EXTS DicomError NotDicomError TruncatedError NoPixelDataError MissingDecoderError MissingTagError
    is_regular_file has_dicom_preamble is_dicom_file path_text get_dicom_files quiet_uid_warnings max_decode_bytes
    read_dicom check_pixel_length decode_reduction box_reduce stored_range has_pixrep_bug read_pixels slice_position sort_slices
    read_series''',
    'parallel': '''
    LOCK_FILE parallel_map FolderBusyError folder_lock''',
    'meta': '''
    header_row pixel_stats file_row dicom_meta write_meta read_meta write_dicom_meta''',
    'synth': '''
    LESIONS LABELS TRANSFER_SYNTAXES MIN_BLEED_PIXELS MG_SYNTAXES head_phantom lesion_mask bleed_profile head_series
    ct_dataset make_competition breast_phantom mg_dataset make_mammography''',
    'window': '''
    DEFAULT_WINDOWS WINDOWS window header_window_count header_window register_window list_windows WindowSpec parse_window
    parse_windows freqhist_bins hist_scaled window_channels body_bbox crop_bbox image_shape resize_to resize_longest pad_aspect fit_pixels
    dicom_pixels dicom_channels''',
    'cache': '''
    FORMATS PNG16_OFFSET SETTINGS_FILE MANIFEST_FILE MAX_SIZE HEADER_COLUMNS CacheSettings cache_settings output_path cache_array
    cache_file read_manifest read_cache_settings match_sources cached_paths check_positions cache_meta preprocess''',
    'transforms': '''
    DicomWindows DicomBlock fit_channels load_cached LoadCached load_hu LoadHU WindowBatch HUBlock image_block''',
    'data': '''
    SNIFF_BYTES COMPRESSED CsvError file_size read_csv_file split_long_ids is_long_format read_labels infer_task
    label_table patient_folds slice_positions slice_context n_workers LabelColumns dicom_dataloaders''',
    'train': '''
    MODEL_PACKAGES WeightsError mean_auc weighted_log_loss task_metrics weights_file make_learner DDPTrainer RunConfig
    package_versions best_epoch prepare train train_folds''',
    'infer': '''
    RunError read_config load_run readable_items training_label_mean predict''',
    'submit': '''
    SUBMISSION_FORMATS long_submission wide_submission aggregate is_long_sample SubmissionFormat register_format
    list_formats get_format format_problems make_submission max_submission_bytes read_submission validate_submission
    write_submission rle_encode rle_decode prediction_string''',
    'kaggle_tools': '''
    KAGGLE_IMAGE REPLACEABLE PLATFORMS KaggleError is_kaggle_kernel competition_paths submit_to_kaggle ImageFreeze read_freeze
    resolve_for_image project_root kaggle_image build_wheels check_install run_kit kernel_folder push_kernel''',
    'audit': '''
    SUSPECT SKIP column_auc audit_columns meta_table label_problems Audit leak_table drift_table audit write_audit''',
    'eda': '''
    class_column numeric_columns numeric_histograms scatter_pairs correlation_heatmap label_cooccurrence
    category_columns category_counts images_per_patient intensity_profiles eda_report''',
    'explain': '''
    PICKS default_layer gradcam occlusion explain cam_grid write_saliency''',
    'anonymize': '''
    PROFILE pseudonym pseudo_uid profile_tags instance_uid anonymize_dataset may_have_burned_in_text patient_folder
    anonymize_file anonymize''',
    'demo': '''
    long_log_loss label_prior label_examples images_figure windows_figure stage run_demo demo_report''',
    'baseline': '''
    MATCH_COLUMNS IMAGE_IDS HEADER_PROBES SPLIT_NAME LADDERS MIN_EPOCHS MAX_EPOCHS EPOCH_FACTOR EPOCH_FIXED_S RESERVE CONTEXT_COST
    LayoutError Layout split_folder label_ids header_ids id_match find_layout SampleKey sample_ids key_candidates
    sample_key sample_format Ladder Plan image_seconds run_seconds plan_training measure_step measure_render
    pick_windows pick_context default_out baseline baseline_report''',
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
